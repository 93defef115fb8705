"""Build long multi-scene videos from real media, with ground-truth scenes and object-centred questions.

Sources are real photographs and clips that ship offline (scikit-image's images, opencv-doc's images and videos),
each labelled by hand with the objects a person sees in it - never by the detector the service scores with, so the
ground truth does not flatter the scorer. A video is a timeline of scenes (one source each, 8-90 s, with slow
zoom/pan, exposure drift and sensor noise so consecutive frames differ). For a question about label L, the GT
scenes are the scenes whose source shows L. Output follows KFS-Bench's layout: one record per question with its
scenes as lists of [start_s, end_s] segments.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

# Part of a generated set's manifest: a cached set made by an older generator is made again.
GENERATOR_VERSION = 2  # 2: every drawn target scene is kept; "an astronaut"

# Hand labels: what a person sees. Only sources that actually exist on disk are used.
SKIMAGE_LABELS: dict[str, tuple[str, ...]] = {
    "astronaut": ("person", "astronaut", "flag"),
    "chelsea": ("cat",),
    "coffee": ("cup", "coffee"),
    "camera": ("person", "camera", "tripod"),
    "rocket": ("rocket",),
    "coins": ("coin",),
    "moon": ("moon",),
    "page": ("text",),
    "text": ("text",),
    "grass": ("grass",),
    "brick": ("brick wall",),
    "gravel": ("gravel",),
    "retina": ("retina",),
    "hubble_deep_field": ("galaxy", "space"),
    "immunohistochemistry": ("cells",),
    "colorwheel": ("color wheel",),
    "logo": ("logo",),
    "motorcycle_left": ("motorcycle",),
    "clock": ("clock",),
}
OPENCV_IMAGE_LABELS: dict[str, tuple[str, ...]] = {
    "messi5.jpg": ("person", "sports ball", "football player"),
    "basketball1.png": ("person", "sports ball", "basketball player"),
    "basketball2.png": ("person", "sports ball", "basketball player"),
    "fruits.jpg": ("orange", "apple", "banana", "fruit"),
    "orange.jpg": ("orange", "fruit"),
    "apple.jpg": ("apple", "fruit"),
    "building.jpg": ("building", "car"),
    "HappyFish.jpg": ("fish",),
    "butterfly.jpg": ("butterfly",),
    "baboon.jpg": ("baboon", "monkey"),
    "home.jpg": ("room", "chair"),
    "aero1.jpg": ("aerial view",),
    "starry_night.jpg": ("painting",),
    "smarties.png": ("candy",),
    "squirrel_cls.jpg": ("squirrel",),
    "board.jpg": ("chessboard",),
    "box.png": ("box",),
    "graf1.png": ("graffiti",),
}
OPENCV_VIDEO_LABELS: dict[str, tuple[str, ...]] = {
    "vtest.avi": ("person", "pedestrian", "street"),
    "Megamind.avi": ("cartoon character", "person"),
    "tree.avi": ("tree",),
}
# Questions ask about concrete objects (KFS-Bench's object-centred questions), never textures or styles.
OBJECT_LABELS = frozenset(
    {
        "cat",
        "cup",
        "rocket",
        "coin",
        "clock",
        "sports ball",
        "orange",
        "apple",
        "banana",
        "car",
        "fish",
        "butterfly",
        "monkey",
        "chair",
        "squirrel",
        "tree",
        "motorcycle",
        "pedestrian",
        "camera",
        "candy",
        "box",
        "astronaut",
        "football player",
        "basketball player",
        "moon",
        "tripod",
        "cartoon character",
    }
)
QUESTION_TEMPLATES = (
    "When does {a_label} appear in the video?",
    "Show me the moments with {a_label}.",
    "What is the {label} doing?",
    "Find every scene that contains {a_label}.",
)


def with_article(label: str) -> str:
    """``astronaut`` -> ``an astronaut``; ``cup`` -> ``a cup`` (by the first letter, which fits every label here)."""
    return f"{'an' if label[:1].lower() in 'aeiou' else 'a'} {label}"


def question_text(template: str, label: str) -> str:
    return template.format(label=label, a_label=with_article(label))


@dataclass
class Source:
    name: str
    labels: tuple[str, ...]
    frames: list[NDArray[np.uint8]]  # one still, or a clip's frames (RGB)
    is_clip: bool


@dataclass
class SceneSpan:
    start_s: float
    end_s: float
    source: str
    labels: tuple[str, ...]


@dataclass
class Question:
    question_id: str
    question: str
    label: str
    scenes: list[list[list[float]]]  # per scene: its [start_s, end_s] segments


@dataclass
class VideoSpec:
    video_id: str
    path: str
    duration_s: float
    fps: float
    width: int
    height: int
    timeline: list[SceneSpan] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)


def _rgb(image: NDArray[np.generic]) -> NDArray[np.uint8]:
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = (255 * (array - array.min()) / max(float(array.max() - array.min()), 1e-9)).astype(np.uint8)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return np.ascontiguousarray(array[..., :3])


def _u8(image: object) -> NDArray[np.uint8]:
    return np.asarray(image, dtype=np.uint8)


def load_sources(opencv_data: Path | None, size: tuple[int, int] = (320, 240)) -> list[Source]:
    """Every labelled source that can be read offline, resized to ``size`` (width, height)."""
    import cv2

    sources: list[Source] = []
    try:
        from skimage import data as skdata
    except ImportError:  # scikit-image is the bench extra; opencv-doc alone can still be enough
        skdata = None  # type: ignore[assignment]
    if skdata is not None:
        for name, labels in SKIMAGE_LABELS.items():
            loader = getattr(skdata, name, None)
            if loader is None:
                continue
            try:
                image = _rgb(loader())
            except Exception:  # some skimage images need a download, which fails offline
                continue
            sources.append(Source(name, labels, [image], False))
    if opencv_data is not None and opencv_data.is_dir():
        for name, labels in OPENCV_IMAGE_LABELS.items():
            bgr = cv2.imread(str(opencv_data / name))
            if bgr is not None:
                sources.append(Source(name, labels, [_u8(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))], False))
        for name, labels in OPENCV_VIDEO_LABELS.items():
            capture = cv2.VideoCapture(str(opencv_data / name))
            clip: list[NDArray[np.uint8]] = []
            while len(clip) < 600:
                ok, bgr = capture.read()
                if not ok:
                    break
                clip.append(_u8(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA)))
            capture.release()
            if len(clip) >= 10:
                sources.append(Source(name, labels, clip, True))
    if len(sources) < 6:
        raise RuntimeError("fewer than 6 media sources readable; install scikit-image and opencv-doc (make media)")
    margin = (int(size[0] * 1.4), int(size[1] * 1.4))  # room for the zoom/pan crop
    for source in sources:
        if not source.is_clip:
            source.frames = [_u8(cv2.resize(source.frames[0], margin, interpolation=cv2.INTER_AREA))]
    return sources


def plan_timeline(
    sources: list[Source],
    duration_s: float,
    rng: np.random.Generator,
    targets: list[str],
    min_scene_s: float = 8.0,
    max_scene_s: float = 90.0,
    target_scenes: tuple[int, int] = (2, 5),
    max_target_scene_s: float = 45.0,
) -> list[SceneSpan]:
    """A timeline where each target label shows in a few short scenes and the rest is distractors without it.

    Every target scene drawn is on the timeline (the ground truth never loses a scene): their lengths are drawn
    first, distractor scenes fill the rest of ``duration_s`` (the last one cut to fit), and the target scenes are
    inserted at random places between distractors. Raises ValueError when the targets alone would not fit.
    """
    distractors = [s for s in sources if not set(s.labels) & set(targets)]
    if not distractors:
        raise ValueError("every source shows a target label: no distractor scenes")
    placed: list[tuple[Source, float]] = []
    # A short video gets fewer target scenes (on average at most a third of it shows targets), never cut ones.
    mean_target_s = (min_scene_s + max_target_scene_s) / 2
    most = max(1, min(target_scenes[1], int(duration_s / 3 / (max(1, len(targets)) * mean_target_s))))
    fewest = min(target_scenes[0], most)
    for label in targets:
        holders = [s for s in sources if label in s.labels]
        if not holders:
            raise ValueError(f"no source shows {label!r}")
        count = int(rng.integers(fewest, most + 1))
        for _ in range(count):
            length = float(rng.uniform(min_scene_s, max_target_scene_s))  # a needle, not the haystack
            placed.append((holders[int(rng.integers(len(holders)))], length))
    left = duration_s - math.fsum(length for _, length in placed)
    if left < min_scene_s * (len(placed) + 1):
        raise ValueError(f"{len(placed)} target scenes do not fit {duration_s:.0f} s with distractors between them")
    fill: list[tuple[Source, float]] = []
    previous = ""
    while left > 1e-6:
        pool = [s for s in distractors if s.name != previous] or distractors
        chosen = pool[int(rng.integers(len(pool)))]
        length = min(left, float(rng.uniform(min_scene_s, max_scene_s)))
        fill.append((chosen, length))
        previous, left = chosen.name, left - length
    while len(fill) < len(placed):  # more needles than gaps: split the longest distractor scene in two
        longest = max(range(len(fill)), key=lambda i: fill[i][1])
        source, length = fill[longest]
        pool = [s for s in distractors if s.name != source.name] or distractors
        fill[longest : longest + 1] = [(source, length / 2), (pool[int(rng.integers(len(pool)))], length / 2)]
    # Each target goes into its own gap between distractors (gaps 1..len(fill)), so two never touch.
    gaps = sorted(rng.choice(np.arange(1, len(fill) + 1), size=min(len(placed), len(fill)), replace=False))
    if len(gaps) < len(placed):
        raise ValueError(f"{len(placed)} target scenes need as many distractor gaps; only {len(fill)}")
    order = [int(i) for i in rng.permutation(len(placed))]
    sequence: list[tuple[Source, float]] = []
    inserts = dict(zip((int(g) for g in gaps), (placed[i] for i in order), strict=True))
    for n, scene in enumerate(fill, start=1):
        sequence.append(scene)
        if n in inserts:
            sequence.append(inserts[n])
    spans: list[SceneSpan] = []
    t = 0.0
    for n, (source, length) in enumerate(sequence):
        end = duration_s if n == len(sequence) - 1 else min(duration_s, t + length)
        spans.append(SceneSpan(round(t, 3), round(end, 3), source.name, source.labels))
        t += length
    return spans


def questions_for(
    video_id: str, timeline: list[SceneSpan], labels: list[str], rng: np.random.Generator
) -> list[Question]:
    out = []
    for n, label in enumerate(labels):
        scenes = [[[span.start_s, span.end_s]] for span in timeline if label in span.labels]
        if not scenes:
            continue
        template = QUESTION_TEMPLATES[int(rng.integers(len(QUESTION_TEMPLATES)))]
        out.append(Question(f"{video_id}-q{n}", question_text(template, label), label, scenes))
    return out


def _frames(
    span: SceneSpan,
    source: Source,
    fps: float,
    size: tuple[int, int],
    rng: np.random.Generator,
) -> Iterator[NDArray[np.uint8]]:
    import cv2

    count = max(1, round((span.end_s - span.start_s) * fps))
    width, height = size
    zoom0, zoom1 = rng.uniform(1.0, 1.35, size=2)
    pan = rng.uniform(-1, 1, size=4)
    gain0, gain1 = rng.uniform(0.85, 1.15, size=2)
    offset = int(rng.integers(len(source.frames)))
    for i in range(count):
        a = i / max(1, count - 1)
        if source.is_clip:
            frame = source.frames[(offset + i) % len(source.frames)]
        else:
            still = source.frames[0]
            zoom = zoom0 + (zoom1 - zoom0) * a
            sh, sw = still.shape[:2]
            cw, ch = min(sw, int(sw / zoom)), min(sh, int(sh / zoom))
            cx = (sw - cw) * (0.5 + 0.5 * (pan[0] + (pan[1] - pan[0]) * a) * 0.9)
            cy = (sh - ch) * (0.5 + 0.5 * (pan[2] + (pan[3] - pan[2]) * a) * 0.9)
            x0, y0 = int(np.clip(cx, 0, sw - cw)), int(np.clip(cy, 0, sh - ch))
            frame = _u8(cv2.resize(still[y0 : y0 + ch, x0 : x0 + cw], (width, height), interpolation=cv2.INTER_LINEAR))
        gain = gain0 + (gain1 - gain0) * a
        noisy = frame.astype(np.int16) * gain + rng.normal(0, 3.0, size=(1, 1, 1))
        yield np.clip(noisy + rng.integers(-4, 5, size=frame.shape, dtype=np.int16), 0, 255).astype(np.uint8)


def render(spec: VideoSpec, sources: dict[str, Source], rng: np.random.Generator, gop_s: float = 4.0) -> None:
    """Encode the timeline to H.264 MP4 at ``spec.fps`` with a keyframe every ``gop_s`` seconds."""
    import av

    path = Path(spec.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=int(spec.fps))
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28", "g": str(int(gop_s * spec.fps))}
        written = 0
        for span in spec.timeline:
            target = round(span.end_s * spec.fps) - written
            for frame in _frames(span, sources[span.source], spec.fps, (spec.width, spec.height), rng):
                if target <= 0:
                    break
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
                written += 1
                target -= 1
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)


def generate(
    out_dir: Path,
    durations_min: list[float],
    *,
    opencv_data: Path | None,
    seed: int = 0,
    fps: float = 12.0,
    size: tuple[int, int] = (320, 240),
    questions_per_video: int = 3,
) -> list[VideoSpec]:
    """Generate (or reuse, when the manifest matches) the videos and write ``<out_dir>/manifest.json``."""
    manifest = out_dir / "manifest.json"
    wanted = {
        "generator": GENERATOR_VERSION,
        "durations_min": durations_min,
        "seed": seed,
        "fps": fps,
        "size": list(size),
        "q": questions_per_video,
    }
    if manifest.exists():
        cached = json.loads(manifest.read_text())
        if cached.get("params") == wanted and all(Path(v["path"]).exists() for v in cached["videos"]):
            return [_spec_from_dict(v) for v in cached["videos"]]
    sources = load_sources(opencv_data, size)
    by_name = {s.name: s for s in sources}
    label_pool = sorted({label for s in sources for label in s.labels})
    rng = np.random.default_rng(seed)
    specs = []
    for n, minutes in enumerate(durations_min):
        video_id = f"long{n:02d}_{int(minutes)}min"
        # Labels that not every source has, so a question has a needle to find.
        candidates = [
            lab
            for lab in label_pool
            if lab in OBJECT_LABELS and sum(lab in s.labels for s in sources) <= max(2, len(sources) // 5)
        ]
        labels = list(rng.choice(candidates, size=min(questions_per_video, len(candidates)), replace=False))
        duration = minutes * 60.0
        timeline = plan_timeline(sources, duration, rng, labels)
        spec = VideoSpec(video_id, str(out_dir / f"{video_id}.mp4"), duration, fps, size[0], size[1], timeline)
        spec.questions = questions_for(video_id, timeline, labels, rng)
        render(spec, by_name, rng)
        specs.append(spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"params": wanted, "videos": [asdict(s) for s in specs]}, indent=1))
    return specs


def _spec_from_dict(raw: dict[str, object]) -> VideoSpec:
    spec = VideoSpec(**{k: v for k, v in raw.items() if k not in ("timeline", "questions")})  # type: ignore[arg-type]
    spec.timeline = [SceneSpan(**s) for s in raw["timeline"]]  # type: ignore[attr-defined]
    spec.questions = [Question(**q) for q in raw["questions"]]  # type: ignore[attr-defined]
    return spec


def duration_check(spec: VideoSpec) -> float:
    """Length of the timeline in seconds (equals spec.duration_s by construction)."""
    return math.fsum(span.end_s - span.start_s for span in spec.timeline)
