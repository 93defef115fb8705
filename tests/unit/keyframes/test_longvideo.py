"""The benchmark video generator's timeline and questions (pure: no media decoded)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tessera.keyframes import longvideo
from tessera.keyframes.longvideo import Source, plan_timeline, questions_for

STILL = [np.zeros((4, 4, 3), np.uint8)]


def _sources() -> list[Source]:
    return [
        Source("astro", ("astronaut", "person"), STILL, False),
        Source("cat", ("cat",), STILL, False),
        Source("cup", ("cup",), STILL, False),
        *[Source(f"d{i}", ("grass",), STILL, False) for i in range(4)],
    ]


@pytest.mark.parametrize("seed", range(12))
def test_every_drawn_target_scene_is_on_the_timeline(seed: int) -> None:
    rng = np.random.default_rng(seed)
    duration = 20 * 60.0
    spans = plan_timeline(_sources(), duration, rng, ["astronaut", "cat", "cup"], target_scenes=(4, 5))
    assert spans[0].start_s == 0 and spans[-1].end_s == duration
    assert all(a.end_s == pytest.approx(b.start_s, abs=2e-3) for a, b in itertools.pairwise(spans))
    assert math.isclose(sum(s.end_s - s.start_s for s in spans), duration, abs_tol=0.05)
    for label in ("astronaut", "cat", "cup"):
        assert 4 <= sum(label in s.labels for s in spans) <= 5  # none dropped
    targets = [i for i, s in enumerate(spans) if s.source in ("astro", "cat", "cup")]
    assert all(b - a > 1 for a, b in itertools.pairwise(targets))  # a distractor between any two


def test_a_short_video_gets_fewer_target_scenes_and_refuses_what_cannot_fit() -> None:
    spans = plan_timeline(_sources(), 240.0, np.random.default_rng(0), ["astronaut", "cat", "cup"])
    assert all(sum(label in s.labels for s in spans) == 1 for label in ("astronaut", "cat", "cup"))
    assert spans[-1].end_s == 240.0
    with pytest.raises(ValueError, match="do not fit"):
        plan_timeline(_sources(), 40.0, np.random.default_rng(0), ["astronaut", "cat", "cup"])


def test_questions_use_the_right_article() -> None:
    assert longvideo.with_article("astronaut") == "an astronaut"
    assert longvideo.with_article("cup") == "a cup"
    spans = plan_timeline(_sources(), 600.0, np.random.default_rng(1), ["astronaut"], target_scenes=(2, 2))
    for seed in range(8):
        (question,) = questions_for("v", spans, ["astronaut"], np.random.default_rng(seed))
        assert "a astronaut" not in question.question and "astronaut" in question.question
        assert len(question.scenes) == 2
