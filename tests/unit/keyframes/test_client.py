"""The keyframes client's pure parts: the retry schedule and the requests it builds."""

from __future__ import annotations

import random
from pathlib import Path

import grpc
import pytest

from tessera.keyframes.client import KeyframesError, RetryPolicy, evaluation_request, selection_request
from tessera.keyframes.v1 import keyframes_pb2 as pb


def test_backoff_grows_to_its_cap_and_jitter_only_shortens_it() -> None:
    policy = RetryPolicy(attempts=6, initial_backoff_s=0.1, max_backoff_s=0.5, multiplier=2.0, jitter=0.2)
    rng = random.Random(3)
    for retry, ceiling in enumerate([0.1, 0.2, 0.4, 0.5, 0.5], start=1):
        for _ in range(50):
            assert ceiling * 0.8 <= policy.backoff_s(retry, rng) <= ceiling
    exact = RetryPolicy(initial_backoff_s=0.1, max_backoff_s=1.0, jitter=0.0)
    assert [exact.backoff_s(n, rng) for n in (1, 2, 3)] == pytest.approx([0.1, 0.2, 0.4])


@pytest.mark.parametrize(
    "bad",
    [
        {"attempts": 0},
        {"initial_backoff_s": 0.0},
        {"initial_backoff_s": 3.0, "max_backoff_s": 1.0},
        {"multiplier": 0.5},
        {"jitter": 1.0},
    ],
)
def test_policy_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**bad)  # type: ignore[arg-type]


def test_video_is_a_uri_unless_it_is_bytes() -> None:
    by_path = selection_request(Path("/data/a.mp4"), "a cat", 4)
    assert by_path.video.uri == "/data/a.mp4" and by_path.strategy == pb.STRATEGY_FOCUS
    assert not by_path.HasField("focus")
    inline = selection_request(b"\x00\x01", "a cat", 4, focus=pb.FocusOptions(seed=7))
    assert inline.video.WhichOneof("source") == "inline_data" and inline.focus.seed == 7


def test_scenes_as_segments_or_protos() -> None:
    proto = pb.Scene(segments=[{"start_ms": 5, "end_ms": 6}])
    request = evaluation_request([1, 2], [[(0, 10), (20, 30)], proto])
    assert [[(s.start_ms, s.end_ms) for s in scene.segments] for scene in request.scenes] == [
        [(0, 10), (20, 30)],
        [(5, 6)],
    ]


def test_error_text_names_method_code_fields_and_attempts() -> None:
    error = KeyframesError("SelectKeyframes", grpc.StatusCode.UNAVAILABLE, "down", fields={"video": "gone"}, attempts=3)
    assert str(error) == "SelectKeyframes: UNAVAILABLE: down (video: gone) after 3 attempts"
