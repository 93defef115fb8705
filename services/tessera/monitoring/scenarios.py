"""Room scenarios made from real media: the training data of av_fusion, the benchmark set, the demo and tests.

The room is the pedestrian hall of opencv-doc's ``vtest.avi``:

- busy (day): the clip's own frames, people walking;
- empty (day): the median of the clip's frames, which removes every walker (the room's background plate);
- night: the plate dimmed with sensor noise;
- intruder (night): walkers cut out of real frames (difference to the plate) and laid on the night plate, dimmed.

Sounds are Debian's ``sound-theme-freedesktop`` and ``alsa-utils`` files (speech, phone ring, chimes, an alarm
clock, a crumpling crash, noise) mixed over room tone, plus generated smoke-alarm beeps and a siren-like wail. Each
scenario is a clip with its ground truth: whether it holds an anomaly and from when to when.

Normal kinds: people talking; a phone ringing among people; office chimes among people; an empty room by day;
an empty room at night. Anomalies: a smoke alarm among people; a crash among people; a person in the room at night.

Training and evaluation take disjoint halves of the video (frames and walkers) and disjoint speech and chime files
where a category has several; single-file sounds (the phone, the alarm clock, the crash) appear in both with
different segments, gains, offsets and backgrounds. Everything is seeded: the same seed gives the same media.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from tessera.monitoring.rules import (
    ObjectRuleKind,
    RoomRules,
    SoundRuleMode,
    TimeWindow,
    make_object_rule,
    make_rules,
    make_sound_rule,
    make_zone,
)
from tessera.runtime.audio import MODEL_RATE, decode_file

SOUND_ROOT = Path("/usr/share/sounds")
FRAME_SIZE = (384, 288)  # width, height: half of vtest.avi
SOURCE_FPS = 10.0  # vtest.avi
CLIP_FPS = 10.0  # scenario clips are written at the source rate; analysis samples them at 5 fps
NORMAL_KINDS = ("busy_speech", "busy_phone", "busy_chime", "empty_day", "empty_night")
ANOMALY_KINDS = ("alarm", "crash", "intruder")
KINDS = NORMAL_KINDS + ANOMALY_KINDS
NIGHT_KINDS = ("empty_night", "intruder")
NIGHT_LEVELS = (0.36, 0.42, 0.48)  # night brightness relative to the day plate (pooled frames)
POOL_VARIANTS = 6

_SPEECH = tuple(
    [f"alsa/{side}.wav" for side in ("Front_Center", "Front_Left", "Front_Right", "Rear_Center")]
    + [f"alsa/{side}.wav" for side in ("Rear_Left", "Rear_Right", "Side_Left", "Side_Right")]
    + [f"freedesktop/stereo/audio-channel-{side}.oga" for side in ("front-center", "front-left", "front-right")]
    + [f"freedesktop/stereo/audio-channel-{side}.oga" for side in ("rear-center", "rear-left", "rear-right")]
    + [f"freedesktop/stereo/audio-channel-{side}.oga" for side in ("side-left", "side-right")]
)
_CHIMES = tuple(
    f"freedesktop/stereo/{name}.oga"
    for name in (
        "complete",
        "message",
        "bell",
        "message-new-instant",
        "camera-shutter",
        "dialog-warning",
        "service-login",
        "service-logout",
        "device-added",
        "device-removed",
        "dialog-information",
        "audio-volume-change",
    )
)
_PHONE = "freedesktop/stereo/phone-incoming-call.oga"
_ALARM = "freedesktop/stereo/alarm-clock-elapsed.oga"
_CRASH = "freedesktop/stereo/trash-empty.oga"
_NOISE = "alsa/Noise.wav"


class MediaMissing(FileNotFoundError):
    """Real media the scenarios need is not installed (make media; apt sound-theme-freedesktop alsa-utils)."""


def load_sound(path: Path) -> NDArray[np.float32]:
    """Any audio file -> 16 kHz mono float32."""
    if not path.exists():
        raise MediaMissing(f"{path} missing: apt-get install sound-theme-freedesktop alsa-utils")
    return decode_file(path)


@dataclass
class SoundBank:
    speech: list[NDArray[np.float32]]
    chimes: list[NDArray[np.float32]]
    phone: NDArray[np.float32]
    alarm: NDArray[np.float32]
    crash: NDArray[np.float32]
    noise: NDArray[np.float32]

    @classmethod
    def load(cls, root: Path = SOUND_ROOT, split: str = "eval") -> SoundBank:
        """``split`` "train" takes the even-numbered speech and chime files, "eval" the odd ones."""
        parity = 0 if split == "train" else 1
        return cls(
            speech=[load_sound(root / p) for i, p in enumerate(_SPEECH) if i % 2 == parity],
            chimes=[load_sound(root / p) for i, p in enumerate(_CHIMES) if i % 2 == parity],
            phone=load_sound(root / _PHONE),
            alarm=load_sound(root / _ALARM),
            crash=load_sound(root / _CRASH),
            noise=load_sound(root / _NOISE),
        )


def _db(level_db: float) -> float:
    return float(10.0 ** (level_db / 20.0))


def _normalise(x: NDArray[np.float32], peak_db: float) -> NDArray[np.float32]:
    peak = float(np.abs(x).max()) if len(x) else 0.0
    return (x / peak * _db(peak_db)).astype(np.float32) if peak > 0 else x


def room_tone(rng: np.random.Generator, n: int, noise: NDArray[np.float32], level_db: float) -> NDArray[np.float32]:
    """Ventilation-like background: the alsa noise sample, looped from a random point, low-passed, plus mains hum."""
    start = int(rng.integers(0, max(1, len(noise))))
    looped = np.resize(np.roll(noise, -start), n).astype(np.float32)
    kernel = np.ones(8, np.float32) / 8.0
    smooth = np.convolve(looped, kernel, mode="same")
    t = np.arange(n) / MODEL_RATE
    hum = 0.3 * np.sin(2 * np.pi * rng.choice([50.0, 60.0]) * t + rng.uniform(0, 6.28))
    tone = smooth / (np.abs(smooth).max() + 1e-9) + hum
    return np.asarray(tone / (np.sqrt(np.mean(tone**2)) + 1e-9) * _db(level_db), dtype=np.float32)


def smoke_alarm(rng: np.random.Generator, duration_s: float) -> NDArray[np.float32]:
    """A smoke detector's pattern: a ~3 kHz tone, on/off about twice a second (frequencies vary per device)."""
    t = np.arange(int(duration_s * MODEL_RATE)) / MODEL_RATE
    freq = rng.uniform(2900.0, 3400.0)
    period = rng.uniform(0.4, 0.7)
    gate = ((t % period) < period * rng.uniform(0.45, 0.6)).astype(np.float32)
    tone = np.sin(2 * np.pi * freq * t) + 0.2 * np.sin(2 * np.pi * 2 * freq * t)
    return np.asarray(tone * gate, dtype=np.float32)


def wail(rng: np.random.Generator, duration_s: float) -> NDArray[np.float32]:
    """A siren-like harmonic wail sweeping 600-1300 Hz (training outlier only)."""
    t = np.arange(int(duration_s * MODEL_RATE)) / MODEL_RATE
    f0 = rng.uniform(500, 800) * (1 + 0.5 * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t)))
    phase = 2 * np.pi * np.cumsum(f0) / MODEL_RATE
    x = sum((1.0 / k) * np.sin(k * phase) for k in range(1, 8))
    return np.asarray(x, dtype=np.float32)


def shatter(rng: np.random.Generator, duration_s: float = 1.0) -> NDArray[np.float32]:
    """Many short, bright decaying partials over a noise burst (training outlier only)."""
    n = int(duration_s * MODEL_RATE)
    t = np.arange(n) / MODEL_RATE
    x = rng.standard_normal(n) * np.exp(-t / 0.06)
    for _ in range(50):
        onset = rng.uniform(0, duration_s * 0.6)
        mask = t >= onset
        decay = np.exp(-(t[mask] - onset) / rng.uniform(0.02, 0.15))
        x[mask] += rng.uniform(0.2, 0.6) * np.sin(2 * np.pi * rng.uniform(2500, 7500) * (t[mask] - onset)) * decay
    return np.asarray(x, dtype=np.float32)


@dataclass
class VideoBank:
    """vtest.avi at 5 fps, half size, RGB; the background plate; walker masks per frame."""

    frames: list[NDArray[np.uint8]]
    plate: NDArray[np.uint8]
    masks: list[NDArray[np.uint8]]  # per frame: 255 where a walker differs from the plate

    @classmethod
    def load(cls, vtest: Path, fps: float = 5.0) -> VideoBank:
        if not vtest.exists():
            raise MediaMissing(f"{vtest} missing: run `make media`")
        frames: list[NDArray[np.uint8]] = []
        step = max(1, round(SOURCE_FPS / fps))
        with av.open(str(vtest)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i % step == 0:
                    rgb = frame.to_ndarray(format="rgb24", width=FRAME_SIZE[0], height=FRAME_SIZE[1])
                    frames.append(np.asarray(rgb, dtype=np.uint8))
        plate = np.median(np.stack(frames[::2]), axis=0).astype(np.uint8)
        masks = [walker_mask(f, plate) for f in frames]
        return cls(frames, plate, masks)

    _pool: dict[tuple[Any, ...], NDArray[np.uint8]] = field(default_factory=dict)

    def split_range(self, split: str) -> range:
        half = len(self.frames) // 2
        return range(0, half) if split == "train" else range(half, len(self.frames))

    def pooled(self, key: tuple[Any, ...]) -> NDArray[np.uint8]:
        """A reusable generated frame: ("day", i), ("night", level, i) or ("intruder", index, level, keep).

        Training draws its empty, night and intruder frames from these (a fixed noise per key), so identical frames
        repeat across clips and their detections are computed once.
        """
        if key not in self._pool:
            rng = np.random.default_rng(int(hashlib.blake2b(repr(key).encode(), digest_size=8).hexdigest(), 16))
            if key[0] == "day":
                self._pool[key] = empty_day(self, rng)
            elif key[0] == "night":
                self._pool[key] = night(self, rng, NIGHT_LEVELS[key[1]])
            else:
                self._pool[key] = intruder(self, key[1], rng, NIGHT_LEVELS[key[2]], key[3])
        return self._pool[key]


def walker_mask(frame: NDArray[np.uint8], plate: NDArray[np.uint8]) -> NDArray[np.uint8]:
    diff = cv2.absdiff(frame, plate).max(axis=2)
    mask = (diff > 40).astype(np.uint8) * 255
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mask = cv2.dilate(mask, np.ones((7, 7), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    keep = np.zeros_like(mask)
    for label in range(1, count):
        _, _, w, h, area = stats[label]
        if area >= 150 and h >= 20 and h > 0.8 * w:  # person-shaped blobs only
            keep[labels == label] = 255
    return np.asarray(keep, dtype=np.uint8)


def _noisy(image: NDArray[np.float32], rng: np.random.Generator, sigma: float) -> NDArray[np.uint8]:
    noisy = image + rng.normal(0.0, sigma, image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def empty_day(bank: VideoBank, rng: np.random.Generator) -> NDArray[np.uint8]:
    gain = rng.uniform(0.95, 1.05)
    return _noisy(bank.plate.astype(np.float32) * gain, rng, 2.0)


def night(bank: VideoBank, rng: np.random.Generator, gain: float) -> NDArray[np.uint8]:
    return _noisy(bank.plate.astype(np.float32) * gain, rng, 3.0)


def intruder(bank: VideoBank, index: int, rng: np.random.Generator, gain: float, keep: int) -> NDArray[np.uint8]:
    """The night plate with up to ``keep`` walkers of frame ``index`` laid on it, dimmed like the room."""
    frame, mask = bank.frames[index], bank.masks[index]
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    order = sorted(range(1, count), key=lambda label: -int(stats[label][4]))[:keep]
    chosen = np.isin(labels, order)
    base = bank.plate.astype(np.float32) * gain
    base[chosen] = frame[chosen].astype(np.float32) * gain
    return _noisy(base, rng, 3.0)


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str
    anomaly: bool
    onset_ms: int  # -1 for normal clips; for normal clips with an event (phone, chime): the event's time
    offset_ms: int
    duration_ms: int
    start_minute: int  # local time of day at the clip's start
    description: str


@dataclass
class ScenarioMedia:
    scenario: Scenario
    frames: list[NDArray[np.uint8]]  # at `fps`
    fps: float
    audio: NDArray[np.float32]  # 16 kHz mono
    intruder_frames: list[int] = field(default_factory=list)


def audible(sound: NDArray[np.float32], floor_db: float = -30.0) -> NDArray[np.float32]:
    """The sound without its silent lead-in and tail (below ``floor_db`` of its peak, in 10 ms frames): an event's
    ground-truth onset is when it becomes audible, not when its file (or a segment of it) starts."""
    frame = MODEL_RATE // 100
    usable = len(sound) // frame * frame
    if usable == 0:
        return sound
    rms = np.sqrt(np.mean(np.square(sound[:usable].reshape(-1, frame)), axis=1))
    loud = np.flatnonzero(rms >= rms.max() * _db(floor_db))
    return sound[loud[0] * frame : (loud[-1] + 1) * frame] if len(loud) else sound


def _place(track: NDArray[np.float32], sound: NDArray[np.float32], at_s: float, peak_db: float) -> tuple[int, int]:
    """Mix the audible part of ``sound`` in at ``at_s``; returns its [onset, end) in ms."""
    start = int(at_s * MODEL_RATE)
    piece = _normalise(audible(sound), peak_db)[: max(0, len(track) - start)]
    track[start : start + len(piece)] += piece
    return start * 1000 // MODEL_RATE, (start + len(piece)) * 1000 // MODEL_RATE


def _segment(rng: np.random.Generator, sound: NDArray[np.float32], seconds: float) -> NDArray[np.float32]:
    if len(sound) <= seconds * MODEL_RATE:
        return sound
    start = int(rng.integers(0, len(sound) - int(seconds * MODEL_RATE)))
    return sound[start : start + int(seconds * MODEL_RATE)]


def build(
    kind: str,
    index: int,
    rng: np.random.Generator,
    video: VideoBank,
    sounds: SoundBank,
    *,
    split: str,
    duration_s: float = 8.0,
    fps: float = 5.0,
    training: bool = False,
    pooled: bool = False,
) -> ScenarioMedia:
    """One scenario clip in memory. ``training`` varies the data more (never in the benchmark set): the alarm and
    crash kinds also use the generated wail and shatter sounds, and the phone rings over a wider range of levels,
    in the empty room too; ``pooled`` draws generated frames from ``VideoBank.pooled``."""
    if kind not in KINDS:
        raise ValueError(f"unknown scenario kind {kind!r}; kinds: {KINDS}")
    n_frames = int(duration_s * fps)
    n_samples = int(duration_s * MODEL_RATE)
    span = video.split_range(split)
    busy = kind.startswith("busy") or kind in ("alarm", "crash")
    is_night = kind in NIGHT_KINDS
    level = int(rng.integers(0, len(NIGHT_LEVELS)))
    gain = NIGHT_LEVELS[level] if pooled else float(rng.uniform(0.35, 0.5))
    frames: list[NDArray[np.uint8]] = []
    if busy:  # the bank holds frames at the analysis rate (5 fps)
        first = int(rng.integers(span.start, max(span.start + 1, span.stop - n_frames)))
        frames = [video.frames[min(span.stop - 1, first + i)] for i in range(n_frames)]
    elif kind == "empty_day":
        if pooled:
            frames = [video.pooled(("day", int(rng.integers(0, POOL_VARIANTS)))) for _ in range(n_frames)]
        else:
            frames = [empty_day(video, rng) for _ in range(n_frames)]
    elif pooled:
        frames = [video.pooled(("night", level, int(rng.integers(0, POOL_VARIANTS)))) for _ in range(n_frames)]
    else:
        frames = [night(video, rng, gain) for _ in range(n_frames)]
    audio = np.zeros(n_samples, np.float32)
    audio += room_tone(rng, n_samples, sounds.noise, float(rng.uniform(-52, -42)))
    if busy:  # people talk: a few phrases at conversational level
        for _ in range(int(rng.integers(2, 5))):
            phrase = sounds.speech[int(rng.integers(0, len(sounds.speech)))]
            _place(audio, phrase, float(rng.uniform(0, duration_s - 1.0)), float(rng.uniform(-24, -14)))
    onset_s = float(rng.uniform(2.5, 4.5))
    onset_ms, offset_ms, anomaly = -1, -1, kind in ANOMALY_KINDS
    intruder_frames: list[int] = []
    description = {
        "busy_speech": "people walking and talking",
        "busy_phone": "a phone rings while people walk and talk",
        "busy_chime": "an office chime while people walk and talk",
        "empty_day": "the room empty by day",
        "empty_night": "the room empty at night",
        "alarm": "a smoke alarm goes off while people are in the room",
        "crash": "a crash while people are in the room",
        "intruder": "a person in the room at night",
    }[kind]
    if kind == "busy_phone" or (training and kind == "empty_day" and rng.random() < 0.4):
        ring_db = float(rng.uniform(-18, 0)) if training else float(rng.uniform(-12, -4))
        onset_ms, offset_ms = _place(audio, _segment(rng, sounds.phone, 2.5), onset_s, ring_db)
    elif kind == "busy_chime" or (kind == "empty_day" and rng.random() < 0.5):
        chime = sounds.chimes[int(rng.integers(0, len(sounds.chimes)))]
        onset_ms, offset_ms = _place(audio, chime, onset_s, float(rng.uniform(-14, -4)))
    elif kind == "alarm":
        choice = rng.random()
        if training and choice < 0.25:
            sound = wail(rng, float(rng.uniform(1.5, 3.0)))
        elif choice < 0.6:
            sound = smoke_alarm(rng, float(rng.uniform(2.0, 3.5)))
        else:
            sound = _segment(rng, sounds.alarm, float(rng.uniform(2.0, 3.5)))
        onset_ms, offset_ms = _place(audio, sound, onset_s, float(rng.uniform(-10, -3)))
    elif kind == "crash":
        sound = shatter(rng) if training and rng.random() < 0.3 else sounds.crash
        onset_ms, offset_ms = _place(audio, sound, onset_s, float(rng.uniform(-8, -2)))
    elif kind == "intruder":
        first = int(rng.integers(span.start, span.stop - n_frames))
        keep = int(rng.integers(1, 3))
        onset_frame = math.ceil(onset_s * fps)
        for i in range(onset_frame, n_frames):
            if pooled:
                frames[i] = video.pooled(("intruder", first + i, level, keep))
            else:
                frames[i] = intruder(video, first + i, rng, gain, keep)
            intruder_frames.append(i)
        onset_ms, offset_ms = int(onset_frame * 1000 / fps), int(duration_s * 1000)
        for _ in range(int(rng.integers(0, 3))):  # footsteps are quiet; sometimes a word
            phrase = sounds.speech[int(rng.integers(0, len(sounds.speech)))]
            _place(audio, phrase, float(rng.uniform(onset_s, duration_s - 0.5)), float(rng.uniform(-40, -30)))
    start_minute = int(rng.integers(23 * 60, 24 * 60)) if is_night else int(rng.integers(9 * 60, 17 * 60))
    scenario = Scenario(
        f"{split}-{kind}-{index:03d}",
        kind,
        anomaly,
        onset_ms,
        offset_ms,
        int(duration_s * 1000),
        start_minute,
        description,
    )
    return ScenarioMedia(scenario, frames, fps, np.clip(audio, -1.0, 1.0), intruder_frames)


def write_clip(media: ScenarioMedia, path: Path, fps: float = CLIP_FPS) -> None:
    """An MKV with MJPEG video at ``fps`` (frames repeated from the scenario's rate) and PCM16 16 kHz audio."""
    write_av(media.frames, media.fps, media.audio, path, fps)


def write_av(
    frames: list[NDArray[np.uint8]], frames_fps: float, sound: NDArray[np.float32], path: Path, fps: float
) -> None:
    """RGB frames at ``frames_fps`` (repeated up to ``fps``) and 16 kHz mono audio -> MKV (MJPEG + PCM16)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    repeat = max(1, round(fps / frames_fps))
    tmp = path.with_suffix(".tmp.mkv")
    with av.open(str(tmp), "w") as container:
        video = container.add_stream("mjpeg", rate=Fraction(round(fps)))
        video.width, video.height = frames[0].shape[1], frames[0].shape[0]
        video.pix_fmt = "yuvj420p"
        video.options = {"q:v": "3"}
        audio = container.add_stream("pcm_s16le", rate=MODEL_RATE)
        audio.layout = "mono"
        for frame in frames:
            image = av.VideoFrame.from_ndarray(frame, format="rgb24")
            for _ in range(repeat):
                for packet in video.encode(image):
                    container.mux(packet)
        pcm = (np.clip(sound, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
        chunk = MODEL_RATE // 10
        for start in range(0, pcm.shape[1], chunk):
            piece = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(pcm[:, start : start + chunk]), format="s16", layout="mono"
            )
            piece.sample_rate = MODEL_RATE
            piece.pts = start
            for packet in audio.encode(piece):
                container.mux(packet)
        for stream in (audio, video):
            for packet in stream.encode(None):
                container.mux(packet)
    tmp.replace(path)


def generate_set(
    out_dir: Path,
    opencv_doc: Path,
    *,
    per_kind: int = 5,
    seed: int = 2511,
    split: str = "eval",
    kinds: Sequence[str] = KINDS,
    duration_s: float = 8.0,
    sound_root: Path = SOUND_ROOT,
) -> list[tuple[Scenario, Path]]:
    """The labelled scenario set as clip files plus ``manifest.json``; reused when the manifest matches."""
    params: dict[str, Any] = {
        "per_kind": per_kind,
        "seed": seed,
        "split": split,
        "kinds": list(kinds),
        "duration_s": duration_s,
        "version": 4,
    }
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    manifest_path = out_dir / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("key") == key and all((out_dir / s["file"]).exists() for s in manifest["scenarios"]):
            return [
                (Scenario(**{k: v for k, v in s.items() if k != "file"}), out_dir / s["file"])
                for s in manifest["scenarios"]
            ]
    video = VideoBank.load(opencv_doc / "vtest.avi")
    sounds = SoundBank.load(sound_root, split)
    rng = np.random.default_rng(seed)
    out: list[tuple[Scenario, Path]] = []
    for kind in kinds:
        for i in range(per_kind):
            media = build(kind, i, rng, video, sounds, split=split, duration_s=duration_s)
            path = out_dir / f"{media.scenario.name}.mkv"
            write_clip(media, path)
            out.append((media.scenario, path))
    entries = [{**asdict(s), "file": p.name} for s, p in out]
    manifest_path.write_text(json.dumps({"key": key, "params": params, "scenarios": entries}, indent=1))
    return out


def reference_rules() -> RoomRules:
    """The rules the benchmark and the demo give their room: nobody in the room at night (22:00-06:00), and the
    AudioSet classes a safety team would list for alarms, breakage and screams (corroborated by the learned score)."""
    night_rule = make_object_rule(
        "no-person-at-night", ObjectRuleKind.FORBIDDEN, ["person"], [TimeWindow(22 * 60, 6 * 60)], 0.4, "rules"
    )
    zone = make_zone("hall", [], [night_rule], "rules.zones[0]")
    concern = [
        ("smoke-alarm", "Smoke detector, smoke alarm", 0.5),
        ("fire-alarm", "Fire alarm", 0.5),
        ("alarm", "Alarm", 0.5),
        ("siren", "Siren", 0.5),
        ("glass", "Glass", 0.4),
        ("shatter", "Shatter", 0.4),
        ("scream", "Screaming", 0.4),
    ]
    sounds = [
        make_sound_rule(rule_id, name, threshold, SoundRuleMode.CORROBORATED, f"rules.sound_rules[{i}]")
        for i, (rule_id, name, threshold) in enumerate(concern)
    ]
    return make_rules([zone], sounds, 0.5, 10_000, 0)
