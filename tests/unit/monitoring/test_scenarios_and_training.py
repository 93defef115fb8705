from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from tessera.monitoring import analysis, scenarios
from tessera.monitoring.evidence import Box
from tessera.monitoring.fusion import Policy
from tessera.monitoring.scenarios import Scenario
from tessera.monitoring.training import label


@pytest.fixture(scope="module")
def banks(opencv_doc: Path) -> tuple[scenarios.VideoBank, scenarios.SoundBank]:
    return scenarios.VideoBank.load(opencv_doc / "vtest.avi"), scenarios.SoundBank.load(split="eval")


def test_scenarios_are_seeded_and_labelled(banks: tuple[scenarios.VideoBank, scenarios.SoundBank]) -> None:
    video, sounds = banks
    a = scenarios.build("alarm", 0, np.random.default_rng(3), video, sounds, split="eval", duration_s=6)
    b = scenarios.build("alarm", 0, np.random.default_rng(3), video, sounds, split="eval", duration_s=6)
    assert np.array_equal(a.audio, b.audio) and all(
        np.array_equal(x, y) for x, y in zip(a.frames, b.frames, strict=True)
    )
    s = a.scenario
    assert s.anomaly and 2500 <= s.onset_ms <= 4500 < s.offset_ms <= 6000 and len(a.frames) == 30
    onset = s.onset_ms * 16
    assert np.abs(a.audio[onset : onset + 8000]).max() > 10 * np.abs(a.audio[: onset - 1600]).max() / 2
    night = scenarios.build("intruder", 1, np.random.default_rng(4), video, sounds, split="eval", duration_s=6)
    first = night.intruder_frames[0]
    assert night.scenario.onset_ms == first * 200 and night.scenario.start_minute >= 23 * 60
    assert night.frames[first].astype(int).mean() < video.plate.astype(int).mean()  # it is dark
    assert not np.array_equal(night.frames[first], night.frames[first - 1])
    with pytest.raises(ValueError, match="unknown scenario kind"):
        scenarios.build("flood", 0, np.random.default_rng(0), video, sounds, split="eval")


def test_training_and_evaluation_use_different_halves(banks: tuple[scenarios.VideoBank, scenarios.SoundBank]) -> None:
    video, _ = banks
    train, evaluation = video.split_range("train"), video.split_range("eval")
    assert train.stop == evaluation.start and len(train) > 100 and len(evaluation) > 100
    train_sounds = scenarios.SoundBank.load(split="train")
    eval_sounds = banks[1]
    assert all(not np.array_equal(x, y) for x in train_sounds.speech for y in eval_sounds.speech if len(x) == len(y))


def test_clip_files_decode_back_to_the_scenario(
    tmp_path: Path, banks: tuple[scenarios.VideoBank, scenarios.SoundBank]
) -> None:
    video, sounds = banks
    media = scenarios.build("busy_chime", 0, np.random.default_rng(5), video, sounds, split="eval", duration_s=4)
    path = tmp_path / "clip.mkv"
    scenarios.write_clip(media, path)
    frames, audio, duration = analysis.decode_video(path, 5.0, max_duration_s=60)
    assert [t for t, _ in frames] == list(range(0, 4000, 200))
    assert audio is not None and abs(len(audio) - len(media.audio)) < 1600
    assert np.corrcoef(audio[: len(media.audio)][:32000], media.audio[:32000])[0, 1] > 0.99
    assert 3900 <= duration <= 4300
    with pytest.raises(analysis.MediaError) as error:
        analysis.decode_video(path, 5.0, max_duration_s=1)
    assert error.value.field == "video"


def test_labels_leave_the_fuzzy_edges_out() -> None:
    sound = Scenario("s", "alarm", True, 3000, 5000, 8000, 600, "")
    assert label(sound, 2900) == 0.0 and label(sound, 3050) is None and label(sound, 3200) == 1.0
    assert label(sound, 5700) == 1.0 and label(sound, 6000) is None and label(sound, 6600) == 0.0
    intruder = Scenario("i", "intruder", True, 3000, 8000, 8000, 1400, "")
    assert label(intruder, 2999) == 0.0 and label(intruder, 3000) == 1.0
    assert label(Scenario("n", "busy_phone", False, 3000, 4000, 8000, 600, ""), 3500) == 0.0


class FakeModels:
    """Detections and sounds scripted by time, to check the replay's order and cooldown."""

    def __init__(self) -> None:
        self.object_labels = ["person"]
        self.sound_labels = ["Speech", "Alarm"]

    async def detect(self, images: object) -> list[tuple[Box, ...]]:
        return [(Box("person", 0.9, 0.1, 0.1, 0.2, 0.9),) for _ in images]  # type: ignore[attr-defined]

    async def sounds(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
        loud = np.abs(windows).max(axis=1) > 0.5
        scores = np.stack([np.full(len(windows), 0.1), np.where(loud, 0.9, 0.0)], axis=1).astype(np.float32)
        return scores, np.zeros((len(windows), 1024), np.float32)

    async def fuse(self, visual: np.ndarray, audio: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
        return np.where(audio[:, -1, 3:].sum(axis=1) >= 0, 0.6, 0.0).astype(np.float32)


def test_replay_evaluates_every_point_in_time_order_with_cooldown() -> None:
    audio = np.zeros(16000 * 4, np.float32)
    audio[16000 * 2 :] = 0.9  # "an alarm" from 2 s
    frames = [(t, np.zeros((32, 32, 3), np.uint8)) for t in range(0, 4000, 200)]
    evidence = asyncio.run(analysis.gather_evidence(FakeModels(), analysis.ClipMedia(frames, audio, 4000)))
    times = [c.at_ms for c in evidence.contexts]
    assert times == sorted(times) and len(times) == 20 + len(evidence.audio)
    evidence.scores = asyncio.run(analysis.fuse_scores(FakeModels(), evidence.contexts))
    rules = scenarios.reference_rules()
    night = 23 * 60 * 60_000
    alerts = analysis.replay(
        evidence,
        rules=rules,
        policy=Policy.VIDEO_ONLY,
        room_id="r",
        start_unix_ms=night,
        sound_labels=["Speech", "Alarm"],
    )
    assert [a.event_time_ms for a in alerts] == [0]  # then held by the 10 s cooldown
    day = analysis.replay(
        evidence,
        rules=rules,
        policy=Policy.AUDIO_ONLY,
        room_id="r",
        start_unix_ms=12 * 3_600_000,
        sound_labels=["Speech", "Alarm"],
    )
    assert len(day) == 1 and day[0].rule_id == "alarm" and 2000 <= day[0].event_time_ms <= 2400
