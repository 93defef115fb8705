"""Generate the keyframe-selection benchmark set: long multi-scene videos and KFS-Bench-style questions.

Videos are rendered by :func:`tessera.keyframes.longvideo.generate` from real media (scikit-image stills, opencv-doc
images and clips), each scene hand-labelled with the objects a person sees in it. The questions file follows
KFS-Bench's JSON form: a list of records, one per question, with its ground-truth scenes as lists of
``[start_s, end_s]`` segments::

    [{"video_id": ..., "question_id": ..., "question": ..., "duration": <video seconds>,
      "scenes": [[[start, end], ...], ...], "label": <object asked about>, "video": <path from the repo root>}, ...]

Usage::

    .venv/bin/python benchmarks/keyframes/generate.py            # 30/40/50/60-min videos, 3 questions each
    .venv/bin/python benchmarks/keyframes/generate.py --quick    # one 10-min video, 2 questions

Data goes to ``benchmarks/data/keyframes/`` (``quick/`` below it for ``--quick``); it is gitignored and reused
while the generation parameters are unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera.keyframes import longvideo

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT / "benchmarks" / "data" / "keyframes"
OPENCV_DOC = ROOT / "build" / "media" / "opencv-doc"
DEFAULT_DURATIONS_MIN = (30.0, 40.0, 50.0, 60.0)
QUICK_DURATIONS_MIN = (10.0,)
DEFAULT_QUESTIONS_PER_VIDEO = 3
QUICK_QUESTIONS_PER_VIDEO = 2


@dataclass(frozen=True)
class BenchSet:
    """A generated set: where it lives, its videos (with timelines) and its questions in KFS-Bench form."""

    data_dir: Path
    questions_path: Path
    videos: list[longvideo.VideoSpec]
    questions: list[dict[str, Any]]

    def video(self, video_id: str) -> longvideo.VideoSpec:
        return next(v for v in self.videos if v.video_id == video_id)


def _relative(path: Path) -> str:
    """A path under the repository as a repository-relative string (absolute otherwise)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def kfs_questions(videos: list[longvideo.VideoSpec]) -> list[dict[str, Any]]:
    """One KFS-Bench record per question (``scenes``: per scene its ``[start_s, end_s]`` segments)."""
    records = []
    for video in videos:
        for question in video.questions:
            records.append(
                {
                    "video_id": video.video_id,
                    "question_id": question.question_id,
                    "question": question.question,
                    "duration": video.duration_s,
                    "scenes": [[[float(start), float(end)] for start, end in scene] for scene in question.scenes],
                    "label": question.label,
                    "video": _relative(Path(video.path)),
                }
            )
    return records


def build(
    data_dir: Path,
    durations_min: list[float],
    *,
    seed: int = 0,
    questions_per_video: int = DEFAULT_QUESTIONS_PER_VIDEO,
    opencv_data: Path = OPENCV_DOC,
) -> BenchSet:
    """Render (or reuse) the videos and (re)write ``<data_dir>/questions.json``."""
    if not (opencv_data / "vtest.avi").exists():
        raise SystemExit(f"real media missing at {opencv_data}: run `make media`")
    began = time.perf_counter()
    print(f"[generate] {len(durations_min)} videos {durations_min} min, seed {seed} -> {data_dir}", file=sys.stderr)
    videos = longvideo.generate(
        data_dir, list(durations_min), opencv_data=opencv_data, seed=seed, questions_per_video=questions_per_video
    )
    questions = kfs_questions(videos)
    questions_path = data_dir / "questions.json"
    questions_path.write_text(json.dumps(questions, indent=1) + "\n")
    print(
        f"[generate] {len(videos)} videos, {len(questions)} questions in {time.perf_counter() - began:.1f} s; "
        f"questions: {questions_path}",
        file=sys.stderr,
    )
    return BenchSet(data_dir, questions_path, videos, questions)


def build_default(quick: bool = False, seed: int = 0) -> BenchSet:
    """The committed benchmark set, or the one-video smoke set with ``quick``."""
    if quick:
        return build(
            DATA_DIR / "quick", list(QUICK_DURATIONS_MIN), seed=seed, questions_per_video=QUICK_QUESTIONS_PER_VIDEO
        )
    return build(DATA_DIR, list(DEFAULT_DURATIONS_MIN), seed=seed, questions_per_video=DEFAULT_QUESTIONS_PER_VIDEO)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one 10-min video with 2 questions (smoke set)")
    parser.add_argument("--durations", type=float, nargs="+", help="video lengths in minutes (custom set)")
    parser.add_argument("--questions-per-video", type=int, default=DEFAULT_QUESTIONS_PER_VIDEO)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="data folder for a custom set (default: benchmarks/data/keyframes)")
    args = parser.parse_args(argv)
    if args.durations:
        build(
            args.out or DATA_DIR / "custom",
            args.durations,
            seed=args.seed,
            questions_per_video=args.questions_per_video,
        )
    else:
        build_default(args.quick, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
