"""A held-out set of long room recordings, disjoint from everything ``scenarios`` (training and its evaluation
split) uses, and the event-level scoring that judges alerts on it: precision, recall, F1 and false alarms per hour.

Disjoint by construction (``training_sources`` / ``heldout_sources`` list both; a unit test asserts no overlap):

- rooms: a courtyard (opencv-doc ``leuvenA.jpg``) and a building entrance (``building.jpg``), not vtest.avi's hall;
- people: two people cut (GrabCut) from other photographs (``basketball1.png``, ``messi5.jpg``) walking through,
  not vtest.avi's walkers;
- speech: moonshine-voice's read recordings and espeak-ng voices, not the alsa / freedesktop channel announcements;
- benign sounds: the other freedesktop files (an outgoing call and busy tone, UI sounds, the test signal) and
  generated doorbells, DTMF dialling and a ringback tone; the training chimes and the incoming-call ring are not used;
- anomalies: a temporal-3 smoke alarm above training's frequencies, a hi-lo siren, two generated breakages
  (a falling shelf with debris, a dropped tray of glasses), and a person walking through the room at night;
- room tone: pink fan noise with a blade tone (not the alsa noise sample and mains hum) at quieter and louder
  levels than training's; speech, benign and anomaly levels are drawn from ranges training does not use.

Clips last minutes and have more benign events than anomalies; several hold two or three anomalies close together.
Everything is seeded; synthesised speech is cached as wav files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy.signal import lfilter

from tessera.monitoring import scenarios
from tessera.runtime.audio import MODEL_RATE, decode_file

VERSION = 1  # bump when the generated media changes (it keys the benchmark's cache of detections)
FRAME_SIZE = scenarios.FRAME_SIZE  # the cameras deliver the same size as the training room's
ROOMS = {"courtyard": "leuvenA.jpg", "entrance": "building.jpg"}
# (file, GrabCut rectangle x, y, w, h) of a standing person in the photograph
PEOPLE = (("basketball1.png", (25, 70, 140, 405)), ("messi5.jpg", (65, 55, 395, 287)))
SPEECH_WAVS = ("two_cities.wav", "beckett.wav", "endgame_nagg_nell.wav")  # moonshine-voice assets
ESPEAK_VOICES = ("en-gb-scotland+f3", "en-us+m3", "en-029", "en-gb-x-rp+f4")
ESPEAK_LINES = (
    "Could you pass me the folder on the second shelf, the blue one.",
    "The delivery is late again, I will call them after lunch.",
    "Did anyone see where I left my keys this morning?",
    "We should move the meeting to Thursday, the room is booked.",
)
BENIGN_FILES = tuple(
    f"freedesktop/stereo/{name}.oga"
    for name in (
        "phone-outgoing-calling",
        "phone-outgoing-busy",
        "window-attention",
        "window-question",
        "dialog-error",
        "network-connectivity-established",
        "network-connectivity-lost",
        "power-plug",
        "power-unplug",
        "screen-capture",
        "suspend-error",
        "audio-test-signal",
    )
)
BENIGN_GENERATED = ("doorbell", "dtmf", "ringback")
ANOMALY_GENERATED = ("t3_smoke_alarm", "hilo_siren", "falling_shelf", "glass_tray")
ANOMALY_KINDS = ("alarm", "crash", "intruder")
EARLY_MS, LATE_MS = 500, 1500  # an alert matches an anomaly when its time is in [onset - early, end + late]
FPS = 5.0
DAY_GAIN = (0.85, 1.1)
NIGHT_GAIN = (0.22, 0.3)  # darker than training's night (0.35-0.5 of its plate)
ROOM_TONE_DB = ((-62.0, -55.0), (-40.0, -36.0))  # training: -52..-42 dB RMS
SPEECH_PEAK_DB = ((-32.0, -25.0), (-12.0, -8.0))  # training: -24..-14 dB peak
BENIGN_PEAK_DB = (-22.0, -2.0)
ALARM_PEAK_DB = ((-18.0, -11.0), (-2.0, -0.5))  # training: -10..-3
CRASH_PEAK_DB = ((-16.0, -9.0), (-1.5, -0.5))  # training: -8..-2
POOL_VARIANTS = 6


# ---------------------------------------------------------------------------------------------- sources


def training_sources() -> dict[str, set[str]]:
    """What ``scenarios`` (and so training and its evaluation split) draws on."""
    return {
        "video": {"vtest.avi"},
        "sound_files": {*scenarios._SPEECH, *scenarios._CHIMES, scenarios._PHONE, scenarios._ALARM, scenarios._CRASH}
        | {scenarios._NOISE},
        "speech": {"alsa/freedesktop channel announcements"},
        "generated": {"smoke_alarm", "wail", "shatter", "room_tone"},
    }


# The level ranges ``scenarios.build`` draws from (a unit test finds each in its source): the held-out ranges lie
# outside them.
TRAINING_LEVELS = {
    "room_tone_db": (-52.0, -42.0),
    "speech_peak_db": (-24.0, -14.0),
    "alarm_peak_db": (-10.0, -3.0),
    "crash_peak_db": (-8.0, -2.0),
    "night_gain": (0.35, 0.5),
}


def heldout_sources() -> dict[str, set[str]]:
    return {
        "video": {*ROOMS.values(), *(name for name, _ in PEOPLE)},
        "sound_files": set(BENIGN_FILES),
        "speech": {*SPEECH_WAVS, *(f"espeak-ng:{v}" for v in ESPEAK_VOICES)},
        "generated": {*BENIGN_GENERATED, *ANOMALY_GENERATED, "fan_tone"},
    }


# ---------------------------------------------------------------------------------------------- events, scoring


@dataclass(frozen=True)
class Event:
    kind: str  # an anomaly kind (ANOMALY_KINDS) or a benign one ("speech", "visitor", "phone", "tone", ...)
    source: str
    onset_ms: int
    end_ms: int
    anomaly: bool


@dataclass(frozen=True)
class LongClip:
    name: str
    room: str
    night: bool
    start_minute: int
    duration_ms: int
    events: tuple[Event, ...]

    @property
    def anomalies(self) -> tuple[Event, ...]:
        return tuple(e for e in self.events if e.anomaly)

    @property
    def benign(self) -> tuple[Event, ...]:
        return tuple(e for e in self.events if not e.anomaly)


@dataclass(frozen=True)
class RaisedAlert:
    """An alert as the evaluation sees it: its evidence time and the times of findings merged into it later."""

    event_time_ms: int
    merged_times_ms: tuple[int, ...] = ()
    rule_id: str = ""


def matches(event: Event, time_ms: int, early_ms: int = EARLY_MS, late_ms: int = LATE_MS) -> bool:
    return event.onset_ms - early_ms <= time_ms <= event.end_ms + late_ms


def score_clips(
    outcomes: Sequence[tuple[LongClip, Sequence[RaisedAlert]]], *, early_ms: int = EARLY_MS, late_ms: int = LATE_MS
) -> dict[str, Any]:
    """Event-level figures over long clips.

    An alert is correct when its evidence time lies within an anomaly's window ([onset - early, end + late]) and a
    false alarm otherwise. An anomaly is detected when an alert's evidence time, or a finding merged into an alert
    (a published revision), lies within its window. precision = correct alerts / alerts; recall = anomalies detected
    / anomalies; false alarms per hour = false alarms / hours of recording. False alarms are attributed to the
    benign event whose window holds them (``background`` when none does)."""
    alerts = correct = detected = anomalies = 0
    duration_ms = 0
    by_kind: dict[str, dict[str, int]] = {}
    false_by_cause: dict[str, int] = {}
    for clip, raised in outcomes:
        duration_ms += clip.duration_ms
        for alert in raised:
            alerts += 1
            if any(matches(a, alert.event_time_ms, early_ms, late_ms) for a in clip.anomalies):
                correct += 1
                continue
            cause = next(
                (e.kind for e in clip.benign if matches(e, alert.event_time_ms, early_ms, late_ms)), "background"
            )
            false_by_cause[cause] = false_by_cause.get(cause, 0) + 1
        for anomaly in clip.anomalies:
            anomalies += 1
            entry = by_kind.setdefault(anomaly.kind, {"events": 0, "detected": 0})
            entry["events"] += 1
            times = [t for a in raised for t in (a.event_time_ms, *a.merged_times_ms)]
            if any(matches(anomaly, t, early_ms, late_ms) for t in times):
                detected += 1
                entry["detected"] += 1
    hours = duration_ms / 3_600_000
    false_alarms = alerts - correct
    precision = correct / alerts if alerts else 0.0
    recall = detected / anomalies if anomalies else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "false_alarms_per_hour": round(false_alarms / hours, 2) if hours else 0.0,
        "alerts": alerts,
        "correct_alerts": correct,
        "false_alarms": false_alarms,
        "anomalies": anomalies,
        "anomalies_detected": detected,
        "hours": round(hours, 4),
        "by_anomaly_kind": dict(sorted(by_kind.items())),
        "false_alarms_by_cause": dict(sorted(false_by_cause.items())),
    }


# ---------------------------------------------------------------------------------------------- sounds


def _db(level_db: float) -> float:
    return float(10.0 ** (level_db / 20.0))


def _range(rng: np.random.Generator, ranges: Sequence[tuple[float, float]] | tuple[float, float]) -> float:
    if isinstance(ranges[0], tuple):  # one of several bands, then a level in it
        bands = cast(Sequence[tuple[float, float]], ranges)
        low, high = bands[int(rng.integers(0, len(bands)))]
    else:
        low, high = cast(tuple[float, float], ranges)
    return float(rng.uniform(low, high))


def _t(seconds: float) -> NDArray[np.float64]:
    return np.arange(int(seconds * MODEL_RATE)) / MODEL_RATE


def fan_tone(rng: np.random.Generator, n: int, level_db: float) -> NDArray[np.float32]:
    """Ventilation: pink-ish noise (white noise through a leaky integrator and a high-pass) plus a fan's blade tone."""
    white = rng.standard_normal(n)
    pink = lfilter([1.0], [1.0, -0.985], white)  # a leaky integral: a 1/f-like tilt
    pink = pink - np.convolve(pink, np.ones(400) / 400, mode="same") + 0.3 * white
    t = np.arange(n) / MODEL_RATE
    blade = rng.uniform(85.0, 140.0)
    tone = pink / (np.std(pink) + 1e-9) + 0.4 * np.sin(2 * np.pi * blade * t) + 0.2 * np.sin(4 * np.pi * blade * t)
    return np.asarray(tone / (np.sqrt(np.mean(tone**2)) + 1e-9) * _db(level_db), dtype=np.float32)


def doorbell(rng: np.random.Generator) -> NDArray[np.float32]:
    """Ding-dong: two struck tones with harmonics, each decaying."""
    high, low = rng.uniform(620, 720), rng.uniform(500, 560)
    out = np.zeros(int(2.2 * MODEL_RATE))
    for at, f in ((0.0, high), (0.7, low)):
        t = _t(1.5)
        note = sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 2, 3)) * np.exp(-t / 0.45)
        start = int(at * MODEL_RATE)
        out[start : start + len(note)] += note
    return out.astype(np.float32)


def dtmf(rng: np.random.Generator) -> NDArray[np.float32]:
    """Someone dialling: 7-10 DTMF digits of 90-140 ms with gaps."""
    rows, cols = (697, 770, 852, 941), (1209, 1336, 1477)
    pieces = []
    for _ in range(int(rng.integers(7, 11))):
        t = _t(rng.uniform(0.09, 0.14))
        tone = np.sin(2 * np.pi * rows[int(rng.integers(0, 4))] * t) + np.sin(
            2 * np.pi * cols[int(rng.integers(0, 3))] * t
        )
        pieces += [tone, np.zeros(int(rng.uniform(0.08, 0.25) * MODEL_RATE))]
    return np.asarray(np.concatenate(pieces) / 2, dtype=np.float32)


def ringback(rng: np.random.Generator) -> NDArray[np.float32]:
    """A desk phone's double ring (400+450 Hz, 0.4 s on, 0.2 s off, 0.4 s on, 2 s off), 2-4 cycles."""
    cycle = []
    for on in (0.4, 0.4):
        t = _t(on)
        cycle += [np.sin(2 * np.pi * 400 * t) + np.sin(2 * np.pi * 450 * t), np.zeros(int(0.2 * MODEL_RATE))]
    cycle.append(np.zeros(int(1.8 * MODEL_RATE)))
    one = np.concatenate(cycle)
    return np.asarray(np.tile(one, int(rng.integers(2, 5)))[: -int(1.8 * MODEL_RATE)] / 2, dtype=np.float32)


def t3_smoke_alarm(rng: np.random.Generator, duration_s: float) -> NDArray[np.float32]:
    """Temporal-3 evacuation pattern (0.5 s on, 0.5 s off, three times, then 1.5 s off) at 3.45-3.8 kHz."""
    t = _t(duration_s)
    freq = rng.uniform(3450.0, 3800.0)
    phase = t % 4.0
    gate = ((phase < 2.5) & ((phase % 1.0) < 0.5)).astype(np.float64)
    x = (np.sin(2 * np.pi * freq * t) + 0.3 * np.sign(np.sin(2 * np.pi * freq * t))) * gate
    return np.asarray(x, dtype=np.float32)


def hilo_siren(rng: np.random.Generator, duration_s: float) -> NDArray[np.float32]:
    """A two-tone (hi-lo) siren: square-ish tones alternating every 0.4-0.6 s."""
    t = _t(duration_s)
    low = rng.uniform(420.0, 470.0)
    high = low * rng.uniform(1.3, 1.4)
    half = rng.uniform(0.4, 0.6)
    f = np.where((t % (2 * half)) < half, low, high)
    phase = 2 * np.pi * np.cumsum(f) / MODEL_RATE
    x = sum(np.sin(k * phase) / k for k in (1, 3, 5, 7))
    return np.asarray(x, dtype=np.float32)


def falling_shelf(rng: np.random.Generator) -> NDArray[np.float32]:
    """A heavy thud (a decaying 50-110 Hz body) followed by debris: clattering bursts of band-passed noise."""
    n = int(2.2 * MODEL_RATE)
    t = np.arange(n) / MODEL_RATE
    x = 1.4 * np.sin(2 * np.pi * rng.uniform(50, 110) * t) * np.exp(-t / 0.12)
    x += rng.standard_normal(n) * np.exp(-t / 0.05)
    for _ in range(int(rng.integers(18, 30))):
        onset = rng.uniform(0.05, 1.6)
        start = int(onset * MODEL_RATE)
        length = int(rng.uniform(0.02, 0.12) * MODEL_RATE)
        burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 4))
        burst = np.convolve(burst, np.ones(3) / 3, mode="same") * rng.uniform(0.2, 0.8) * math.exp(-onset)
        x[start : start + length] += burst[: max(0, n - start)]
    return np.asarray(x, dtype=np.float32)


def glass_tray(rng: np.random.Generator) -> NDArray[np.float32]:
    """A tray of glasses dropped: a bright impact, then many ringing fragments (4-9 kHz) bouncing over ~1.5 s."""
    n = int(2.0 * MODEL_RATE)
    t = np.arange(n) / MODEL_RATE
    x = rng.standard_normal(n) * np.exp(-t / 0.03)
    x = x - np.convolve(x, np.ones(8) / 8, mode="same")  # high-passed impact
    for _ in range(int(rng.integers(60, 100))):
        onset = rng.uniform(0.0, 1.5) ** 1.5
        mask = t >= onset
        ring = np.sin(2 * np.pi * rng.uniform(4000, 9000) * (t[mask] - onset)) * np.exp(
            -(t[mask] - onset) / rng.uniform(0.01, 0.08)
        )
        x[mask] += rng.uniform(0.1, 0.5) * ring * math.exp(-onset / 0.8)
    return np.asarray(x, dtype=np.float32)


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise scenarios.MediaMissing(f"package {package} is not installed (make install)")
    return Path(next(iter(spec.submodule_search_locations)))


def espeak(voice: str, text: str, cache: Path) -> NDArray[np.float32]:
    """espeak-ng speech at 16 kHz, cached under ``cache`` (the key is the voice and the text)."""
    key = hashlib.sha256(f"{voice}\x00{text}".encode()).hexdigest()[:16]
    path = cache / f"espeak-{key}.wav"
    if not path.exists():
        if shutil.which("espeak-ng") is None:
            raise scenarios.MediaMissing("espeak-ng missing: apt-get install espeak-ng")
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(tmp), text], check=True, timeout=60)
        tmp.replace(path)
    return decode_file(path)


@dataclass
class HeldoutSounds:
    speech: list[tuple[str, NDArray[np.float32]]]  # (source, samples)
    benign: list[tuple[str, NDArray[np.float32]]]

    @classmethod
    def load(cls, cache: Path, sound_root: Path = scenarios.SOUND_ROOT) -> HeldoutSounds:
        assets = _package_dir("moonshine_voice") / "assets"
        speech = [(name, decode_file(assets / name)) for name in SPEECH_WAVS]
        speech += [(f"espeak-ng:{v}", espeak(v, line, cache)) for v in ESPEAK_VOICES for line in ESPEAK_LINES[:2]]
        speech += [(f"espeak-ng:{v}", espeak(v, line, cache)) for v in ESPEAK_VOICES for line in ESPEAK_LINES[2:]]
        benign = [(name, scenarios.load_sound(sound_root / name)) for name in BENIGN_FILES]
        return cls(speech, benign)


def _benign_kind(source: str) -> str:
    if "phone" in source or source == "ringback":
        return "phone"
    if source in ("dtmf", "audio-test-signal") or "test-signal" in source:
        return "tone"
    if source == "doorbell":
        return "doorbell"
    return "device_sound"


# ---------------------------------------------------------------------------------------------- video


def _cutout(image: NDArray[np.uint8], rect: tuple[int, int, int, int]) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """A person (RGB) and its alpha, by GrabCut seeded with the rectangle and a probable-foreground ellipse."""
    x, y, w, h = rect
    mask = np.full(image.shape[:2], cv2.GC_BGD, np.uint8)
    mask[y : y + h, x : x + w] = cv2.GC_PR_BGD
    centre, axes = (x + w // 2, y + h // 2), (int(w * 0.33), int(h * 0.47))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, cv2.GC_PR_FGD, -1)  # type: ignore[call-overload]
    mask[y + h // 10 : y + h * 9 // 10, x + w // 2 - w // 16 : x + w // 2 + w // 16] = cv2.GC_FGD  # the body's axis
    cv2.setRNGSeed(0)
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.grabCut(image, mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]
    chosen = np.where((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
    alpha = np.asarray(cv2.morphologyEx(chosen, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)), dtype=np.uint8)
    return image[y : y + h, x : x + w].copy(), alpha[y : y + h, x : x + w].copy()


@dataclass
class HeldoutScenes:
    plates: dict[str, NDArray[np.uint8]]  # room -> RGB plate
    people: list[tuple[str, NDArray[np.uint8], NDArray[np.uint8]]]  # (source, RGB, alpha)
    _pool: dict[tuple[Any, ...], NDArray[np.uint8]] = field(default_factory=dict)

    @classmethod
    def load(cls, opencv_doc: Path) -> HeldoutScenes:
        plates = {}
        for room, name in ROOMS.items():
            image = cv2.imread(str(opencv_doc / name), cv2.IMREAD_COLOR)
            if image is None:
                raise scenarios.MediaMissing(f"{opencv_doc / name} missing: run `make media`")
            plates[room] = np.ascontiguousarray(
                cv2.resize(image, FRAME_SIZE, interpolation=cv2.INTER_AREA)[..., ::-1], np.uint8
            )
        people = []
        for name, rect in PEOPLE:
            image = cv2.imread(str(opencv_doc / name), cv2.IMREAD_COLOR)
            if image is None:
                raise scenarios.MediaMissing(f"{opencv_doc / name} missing: run `make media`")
            rgb, alpha = _cutout(np.asarray(image, dtype=np.uint8), rect)
            people.append((name, rgb[..., ::-1].copy(), alpha))
        return cls(plates, people)

    def static(self, room: str, gain: float, variant: int, sigma: float) -> NDArray[np.uint8]:
        """The empty room at a light level with one of a few fixed sensor-noise patterns (reused across frames)."""
        key = (room, round(gain, 3), variant, sigma)
        if key not in self._pool:
            rng = np.random.default_rng(int(hashlib.blake2b(repr(key).encode(), digest_size=8).hexdigest(), 16))
            noisy = self.plates[room].astype(np.float32) * gain + rng.normal(0.0, sigma, self.plates[room].shape)
            self._pool[key] = np.clip(noisy, 0, 255).astype(np.uint8)
        return self._pool[key]

    def with_walkers(
        self,
        room: str,
        gain: float,
        walkers: Sequence[tuple[int, float, float, float]],
        rng: np.random.Generator,
        sigma: float,
    ) -> NDArray[np.uint8]:
        """The room with people at (person index, centre x in [0, 1], feet y in [0, 1], height in px)."""
        base = self.plates[room].astype(np.float32)
        height, width = base.shape[:2]
        for person, cx, feet, size in walkers:
            _, rgb, alpha = self.people[person]
            scale = size / rgb.shape[0]
            sprite = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA).astype(np.float32)
            resized = cv2.resize(alpha, (sprite.shape[1], sprite.shape[0])).astype(np.float32) / 255.0
            a = np.asarray(cv2.GaussianBlur(resized, (3, 3), 0), dtype=np.float32)[..., None]
            x0 = int(cx * width - sprite.shape[1] / 2)
            y0 = int(feet * height - sprite.shape[0])
            xs, ys = max(0, x0), max(0, y0)
            xe, ye = min(width, x0 + sprite.shape[1]), min(height, y0 + sprite.shape[0])
            if xe <= xs or ye <= ys:
                continue
            piece = sprite[ys - y0 : ye - y0, xs - x0 : xe - x0]
            pa = a[ys - y0 : ye - y0, xs - x0 : xe - x0]
            base[ys:ye, xs:xe] = base[ys:ye, xs:xe] * (1 - pa) + piece * pa
        noisy = base * gain + rng.normal(0.0, sigma, base.shape)
        return np.clip(noisy, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- clips


@dataclass
class LongClipMedia:
    clip: LongClip
    frames: list[NDArray[np.uint8]]  # at FPS
    audio: NDArray[np.float32]  # 16 kHz mono


@dataclass(frozen=True)
class _Walk:
    person: int
    start_s: float
    end_s: float
    x_from: float
    x_to: float
    feet: float
    size: float


def _place(track: NDArray[np.float32], sound: NDArray[np.float32], at_s: float, peak_db: float) -> tuple[int, int]:
    """Mix the audible part of ``sound`` at ``at_s`` (peak ``peak_db``); its [onset, end) in ms."""
    start = int(at_s * MODEL_RATE)
    piece = scenarios.audible(sound)
    peak = float(np.abs(piece).max()) if len(piece) else 0.0
    if peak > 0:
        piece = piece / peak * _db(peak_db)
    piece = piece[: max(0, len(track) - start)]
    track[start : start + len(piece)] += piece
    return start * 1000 // MODEL_RATE, (start + len(piece)) * 1000 // MODEL_RATE


class _Timeline:
    """Free time on the clip's audio: events keep ``gap_s`` apart unless placed together on purpose."""

    def __init__(self, duration_s: float, gap_s: float = 4.0) -> None:
        self.duration_s = duration_s
        self.gap_s = gap_s
        self.busy: list[tuple[float, float]] = []

    def free(self, start: float, end: float) -> bool:
        return end <= self.duration_s - 1.0 and all(
            end + self.gap_s <= s or start >= e + self.gap_s for s, e in self.busy
        )

    def find(self, rng: np.random.Generator, length: float, lo: float = 3.0) -> float | None:
        for _ in range(200):
            start = float(rng.uniform(lo, max(lo + 0.1, self.duration_s - length - 2.0)))
            if self.free(start, start + length):
                return start
        return None

    def take(self, start: float, end: float) -> None:
        self.busy.append((start, end))


def build_clip(
    index: int,
    rng: np.random.Generator,
    scenes: HeldoutScenes,
    sounds: HeldoutSounds,
    *,
    duration_s: float = 180.0,
    night: bool,
    room: str,
    anomalies: Sequence[str],
) -> LongClipMedia:
    """One long recording: the room by day (visitors walking and talking, benign sounds) or at night (empty,
    a few benign sounds), with the given anomalies (``alarm``, ``crash``, ``intruder``; the first two may repeat).
    Consecutive anomalies are placed a few seconds apart (several in one event), or far apart."""
    n_frames = int(duration_s * FPS)
    n = int(duration_s * MODEL_RATE)
    audio = fan_tone(rng, n, _range(rng, ROOM_TONE_DB))
    gain = _range(rng, NIGHT_GAIN if night else DAY_GAIN)
    sigma = 4.0 if night else 2.0
    events: list[Event] = []
    timeline = _Timeline(duration_s)
    walks: list[_Walk] = []

    def walk(start: float, length: float) -> _Walk:
        left = rng.random() < 0.5
        span = (float(rng.uniform(-0.1, 0.2)), float(rng.uniform(0.8, 1.1)))
        return _Walk(
            int(rng.integers(0, len(scenes.people))),
            start,
            start + length,
            span[0] if left else span[1],
            span[1] if left else span[0],
            float(rng.uniform(0.85, 1.0)),
            float(rng.uniform(110, 170)),
        )

    # anomalies first: they decide where the quiet stretches must be
    at = float(rng.uniform(15.0, 40.0))
    for k, kind in enumerate(anomalies):
        if kind == "intruder":
            length = float(rng.uniform(14.0, 30.0))
            w = walk(at, length)
            walks.append(w)
            events.append(
                Event("intruder", scenes.people[w.person][0], int(at * 1000), int((at + length) * 1000), True)
            )
            timeline.take(at, at + length)
            nxt = at + float(rng.uniform(4.0, 9.0))  # a crash or an alarm while the intruder is inside
        else:
            if kind == "alarm":
                source = ("t3_smoke_alarm", "hilo_siren")[int(rng.integers(0, 2))]
                length = float(rng.uniform(8.0, 20.0))
                sound = t3_smoke_alarm(rng, length) if source == "t3_smoke_alarm" else hilo_siren(rng, length)
                level = _range(rng, ALARM_PEAK_DB)
            else:
                source = ("falling_shelf", "glass_tray")[int(rng.integers(0, 2))]
                sound = falling_shelf(rng) if source == "falling_shelf" else glass_tray(rng)
                level = _range(rng, CRASH_PEAK_DB)
            onset, end = _place(audio, sound, at, level)
            events.append(Event(kind, source, onset, end, True))
            timeline.take(onset / 1000, end / 1000)
            nxt = end / 1000 + float(rng.uniform(4.0, 9.0))
        if k + 1 < len(anomalies) and rng.random() < 0.4:  # the next one far away instead
            nxt += float(rng.uniform(30.0, 50.0))
        at = min(nxt, duration_s - 25.0)
    # visitors by day (benign: people are allowed by day), each walking through, often talking
    if not night:
        for _ in range(int(rng.integers(3, 6))):
            length = float(rng.uniform(8.0, 20.0))
            start = float(rng.uniform(2.0, duration_s - length - 2.0))
            w = walk(start, length)
            walks.append(w)
            events.append(
                Event("visitor", scenes.people[w.person][0], int(start * 1000), int((start + length) * 1000), False)
            )
    # conversation: phrases at conversational (or distant) levels, by day only
    for _ in range(0 if night else int(rng.integers(4, 8))):
        source, phrase = sounds.speech[int(rng.integers(0, len(sounds.speech)))]
        phrase = phrase[: int(rng.uniform(4.0, 15.0) * MODEL_RATE)]
        said = timeline.find(rng, len(phrase) / MODEL_RATE)
        if said is None:
            continue
        onset, end = _place(audio, phrase, said, _range(rng, SPEECH_PEAK_DB))
        timeline.take(onset / 1000, end / 1000)
        events.append(Event("speech", source, onset, end, False))
    # benign sounds: phones, tones, doorbells, device sounds (more of them than anomalies)
    for _ in range(int(rng.integers(3, 6)) if night else int(rng.integers(6, 10))):
        choice = int(rng.integers(0, len(sounds.benign) + len(BENIGN_GENERATED)))
        if choice < len(sounds.benign):
            source, sound = sounds.benign[choice]
            sound = sound[: int(6.0 * MODEL_RATE)]
            source = Path(source).stem
        else:
            source = BENIGN_GENERATED[choice - len(sounds.benign)]
            sound = {"doorbell": doorbell, "dtmf": dtmf, "ringback": ringback}[source](rng)
        sounded = timeline.find(rng, len(sound) / MODEL_RATE + 0.5)
        if sounded is None:
            continue
        onset, end = _place(audio, sound, sounded, float(rng.uniform(*BENIGN_PEAK_DB)))
        timeline.take(onset / 1000, end / 1000)
        events.append(Event(_benign_kind(source), source, onset, end, False))
    # frames
    frames: list[NDArray[np.uint8]] = []
    variant_rng = np.random.default_rng(int(rng.integers(0, 2**31)))
    for i in range(n_frames):
        t = i / FPS
        present = []
        for w in walks:
            if w.start_s <= t < w.end_s:
                u = (t - w.start_s) / (w.end_s - w.start_s)
                bob = 0.004 * math.sin(2 * math.pi * 1.8 * t)
                present.append((w.person, w.x_from + (w.x_to - w.x_from) * u, w.feet + bob, w.size))
        if present:
            frames.append(scenes.with_walkers(room, gain, present, variant_rng, sigma))
        else:
            frames.append(scenes.static(room, gain, int(variant_rng.integers(0, POOL_VARIANTS)), sigma))
    # an intruder's window is when it is in view (its sprite's centre inside the frame)
    fixed: list[Event] = []
    for event in events:
        if event.kind in ("intruder", "visitor"):
            w = next(w for w in walks if int(w.start_s * 1000) == event.onset_ms)
            seen = [
                i / FPS
                for i in range(n_frames)
                if w.start_s <= i / FPS < w.end_s
                and 0.0 <= w.x_from + (w.x_to - w.x_from) * (i / FPS - w.start_s) / (w.end_s - w.start_s) <= 1.0
            ]
            if seen:
                onset, end = int(seen[0] * 1000), int(seen[-1] * 1000 + 1000 / FPS)
                event = Event(event.kind, event.source, onset, end, event.anomaly)  # noqa: PLW2901
        fixed.append(event)
    if night:
        start_minute = int(rng.integers(22 * 60 + 5, 24 * 60 + 5 * 60)) % (24 * 60)
    else:
        start_minute = int(rng.integers(8 * 60, 18 * 60))
    clip = LongClip(
        f"heldout-{room}-{'night' if night else 'day'}-{index:02d}",
        room,
        night,
        start_minute,
        int(duration_s * 1000),
        tuple(sorted(fixed, key=lambda e: e.onset_ms)),
    )
    return LongClipMedia(clip, frames, np.clip(audio, -1.0, 1.0).astype(np.float32))


# Which anomalies each clip holds: more clips without than with, and some with two or three close together.
PLAN: tuple[tuple[bool, tuple[str, ...]], ...] = (
    (False, ()),
    (False, ("alarm",)),
    (True, ()),
    (False, ("crash", "alarm")),
    (False, ()),
    (True, ("intruder",)),
    (False, ("crash",)),
    (True, ("intruder", "crash")),
    (False, ()),
    (False, ("alarm", "crash")),
    (True, ("intruder", "alarm")),
    (False, ()),
)


def plan(clips: int) -> list[tuple[str, bool, tuple[str, ...]]]:
    """(room, night, anomalies) for ``clips`` clips, cycling ``PLAN`` and the rooms."""
    rooms = list(ROOMS)
    return [(rooms[i % len(rooms)], PLAN[i % len(PLAN)][0], PLAN[i % len(PLAN)][1]) for i in range(clips)]


def generate(
    opencv_doc: Path,
    cache: Path,
    *,
    clips: int = 12,
    duration_s: float = 180.0,
    seed: int = 9173,
    sound_root: Path = scenarios.SOUND_ROOT,
) -> list[LongClipMedia]:
    """The held-out set in memory (seeded: the same arguments give the same media)."""
    scenes = HeldoutScenes.load(opencv_doc)
    sounds = HeldoutSounds.load(cache / "speech", sound_root)
    rng = np.random.default_rng(seed)
    return [
        build_clip(i, rng, scenes, sounds, duration_s=duration_s, night=night, room=room, anomalies=anomalies)
        for i, (room, night, anomalies) in enumerate(plan(clips))
    ]
