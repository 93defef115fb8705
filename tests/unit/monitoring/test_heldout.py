from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from tessera.monitoring import heldout, scenarios
from tessera.monitoring.heldout import Event, LongClip, RaisedAlert, score_clips


def _clip(events: list[Event], duration_ms: int = 1_800_000) -> LongClip:
    return LongClip("c", "courtyard", False, 600, duration_ms, tuple(events))


ALARM = Event("alarm", "hilo_siren", 10_000, 20_000, True)
CRASH = Event("crash", "glass_tray", 24_000, 25_500, True)
PHONE = Event("phone", "ringback", 60_000, 66_000, False)


def test_an_alert_matches_an_anomaly_from_just_before_its_onset_to_shortly_after_its_end() -> None:
    assert heldout.matches(ALARM, 9_500) and heldout.matches(ALARM, 21_500)
    assert not heldout.matches(ALARM, 9_499) and not heldout.matches(ALARM, 21_501)


def test_false_alarms_per_hour_precision_recall_and_causes() -> None:
    # half an hour: one alert on the alarm, one merged finding on the crash, one on the phone, one on nothing
    clip = _clip([ALARM, CRASH, PHONE])
    result = score_clips(
        [(clip, [RaisedAlert(10_400, (24_300,)), RaisedAlert(61_000), RaisedAlert(500_000), RaisedAlert(15_000)])]
    )
    assert result["alerts"] == 4 and result["correct_alerts"] == 2 and result["false_alarms"] == 2
    assert result["precision"] == 0.5 and result["recall"] == 1.0 and result["f1"] == pytest.approx(0.6667)
    assert result["hours"] == 0.5 and result["false_alarms_per_hour"] == 4.0
    assert result["false_alarms_by_cause"] == {"background": 1, "phone": 1}
    assert result["by_anomaly_kind"] == {"alarm": {"events": 1, "detected": 1}, "crash": {"events": 1, "detected": 1}}


def test_a_second_anomaly_swallowed_by_the_first_alert_is_missed() -> None:
    clip = _clip([ALARM, CRASH])
    result = score_clips([(clip, [RaisedAlert(10_400)])], early_ms=500, late_ms=1500)
    assert result["recall"] == 0.5 and result["by_anomaly_kind"]["crash"]["detected"] == 0
    assert result["false_alarms_per_hour"] == 0.0 and result["precision"] == 1.0


def test_figures_pool_over_clips_and_an_empty_outcome_scores_zero() -> None:
    quiet = _clip([PHONE], duration_ms=3_600_000)
    busy = _clip([ALARM], duration_ms=3_600_000)
    result = score_clips([(quiet, [RaisedAlert(62_000)]), (busy, [])])
    assert result["hours"] == 2.0 and result["false_alarms_per_hour"] == 0.5
    assert result["precision"] == 0.0 and result["recall"] == 0.0 and result["f1"] == 0.0


def test_heldout_sources_share_nothing_with_the_training_scenarios() -> None:
    train, held = heldout.training_sources(), heldout.heldout_sources()
    assert "vtest.avi" in train["video"] and not train["video"] & held["video"]
    assert scenarios._PHONE in train["sound_files"] and not train["sound_files"] & held["sound_files"]
    assert not train["generated"] & held["generated"]
    # every sound file scenarios names is listed as a training source (so the check above covers them all)
    named = {*scenarios._SPEECH, *scenarios._CHIMES, scenarios._PHONE, scenarios._ALARM, scenarios._CRASH}
    assert named <= train["sound_files"]
    held_files = {Path(p).name for p in held["sound_files"]} | {Path(p).stem for p in held["sound_files"]}
    assert not held_files & {Path(p).name for p in train["sound_files"]}

    assert not train["speech"] & held["speech"]
    # levels: the held-out ranges lie outside the ranges scenarios draws from (room tone, speech, night exposure,
    # alarm and crash levels), and those ranges are the ones its source uses
    source = inspect.getsource(scenarios)
    for low, high in heldout.TRAINING_LEVELS.values():
        assert f"rng.uniform({low:g}, {high:g})" in source

    def apart(held: tuple[float, float], train: tuple[float, float]) -> bool:
        return held[1] < train[0] or held[0] > train[1]

    levels = heldout.TRAINING_LEVELS
    assert all(apart(h, levels["room_tone_db"]) for h in heldout.ROOM_TONE_DB)
    assert all(apart(h, levels["speech_peak_db"]) for h in heldout.SPEECH_PEAK_DB)
    assert all(apart(h, levels["alarm_peak_db"]) for h in heldout.ALARM_PEAK_DB)
    assert all(apart(h, levels["crash_peak_db"]) for h in heldout.CRASH_PEAK_DB)
    assert apart(heldout.NIGHT_GAIN, levels["night_gain"])
    assert all(apart(heldout.NIGHT_GAIN, (g, g)) for g in scenarios.NIGHT_LEVELS)


def test_generated_sounds_are_seeded_and_shaped() -> None:
    rate = heldout.MODEL_RATE
    a = heldout.t3_smoke_alarm(np.random.default_rng(1), 8.0)
    assert np.array_equal(a, heldout.t3_smoke_alarm(np.random.default_rng(1), 8.0)) and len(a) == 8 * rate
    on = np.abs(a.reshape(-1, rate // 10)).max(axis=1) > 0.5  # 100 ms blocks
    assert on[:5].all() and not on[5:10].any() and on[10:15].all() and not on[25:40].any()  # T3: 3 x on, pause
    spectrum = np.abs(np.fft.rfft(a[: rate // 2]))
    assert 3450 <= np.argmax(spectrum) * 2 <= 3800  # the tone's frequency (0.5 s: 2 Hz bins)
    assert len(heldout.ringback(np.random.default_rng(2))) >= 2 * rate
    for make in (heldout.falling_shelf, heldout.glass_tray, heldout.doorbell, heldout.dtmf):
        x = make(np.random.default_rng(3))
        assert np.isfinite(x).all() and np.abs(x).max() > 0.1
    tone = heldout.fan_tone(np.random.default_rng(4), rate * 2, -40.0)
    assert 20 * np.log10(np.sqrt(np.mean(tone**2))) == pytest.approx(-40.0, abs=0.1)


def test_the_timeline_keeps_events_apart() -> None:
    line = heldout._Timeline(100.0, gap_s=4.0)
    line.take(20.0, 30.0)
    assert not line.free(32.0, 40.0) and line.free(34.0, 40.0) and not line.free(10.0, 17.0)
    assert not line.free(95.0, 99.5)  # too close to the end
    rng = np.random.default_rng(0)
    for _ in range(20):
        start = line.find(rng, 5.0)
        assert start is not None and line.free(start, start + 5.0)


def test_a_long_clip_is_seeded_labelled_and_has_more_benign_events_than_anomalies(
    opencv_doc: Path, tmp_path: Path
) -> None:
    scenes = heldout.HeldoutScenes.load(opencv_doc)
    sounds = heldout.HeldoutSounds.load(tmp_path / "speech")
    assert all(alpha.mean() > 0.1 * 255 for _, _, alpha in scenes.people)  # the cut-outs hold a person

    def make() -> heldout.LongClipMedia:
        return heldout.build_clip(
            3, np.random.default_rng(11), scenes, sounds, duration_s=60, night=True, room="entrance",
            anomalies=("intruder", "crash"),
        )  # fmt: skip

    a, b = make(), make()
    assert a.clip == b.clip and np.array_equal(a.audio, b.audio)
    assert len(a.frames) == 300 and len(a.audio) == 60 * heldout.MODEL_RATE
    assert [e.kind for e in a.clip.anomalies] == ["intruder", "crash"] or [e.kind for e in a.clip.anomalies] == [
        "crash",
        "intruder",
    ]
    assert len(a.clip.benign) > len(a.clip.anomalies) and a.clip.night
    assert a.clip.start_minute >= 22 * 60 or a.clip.start_minute + 1 < 6 * 60  # the whole clip is at night
    intruder = next(e for e in a.clip.anomalies if e.kind == "intruder")
    inside = a.frames[intruder.onset_ms // 200 + 5].astype(int)
    empty = a.frames[2].astype(int)
    assert np.abs(inside - empty).max() > 40  # someone is there
    crash = next(e for e in a.clip.anomalies if e.kind == "crash")
    at = crash.onset_ms * 16
    assert np.abs(a.audio[at : at + 3200]).max() > 5 * np.abs(a.audio[at - 32_000 : at - 16_000]).max()


def test_the_plan_has_more_quiet_clips_than_anomalous_ones_and_several_anomalies_in_some() -> None:
    plan = heldout.plan(12)
    assert len(plan) == 12 and {room for room, _, _ in plan} == set(heldout.ROOMS)
    assert sum(1 for _, _, a in plan if len(a) > 1) >= 3
    assert all(night for _, night, a in plan if "intruder" in a)  # an intruder is one at night
    assert sum(1 for _, _, a in plan if not a) >= 4
