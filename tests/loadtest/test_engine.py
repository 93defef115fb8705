"""The load engine: bounded runs, open-loop latency from the schedule (no coordinated omission), status codes."""

from __future__ import annotations

import asyncio
import itertools
import time

import grpc
import pytest
from loadtest.engine import closed_loop, open_loop, schedule, status_of


async def test_closed_loop_is_bounded_by_count_and_keeps_concurrency() -> None:
    active = 0
    peak = 0

    async def call(_: float) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.005)
        active -= 1

    result = await closed_loop(call, 3, duration_s=10.0, max_requests=30)
    assert len(result.samples) == 30 and peak == 3
    assert all(s.status == "OK" and s.latency_ms == pytest.approx(s.service_ms, abs=0.5) for s in result.samples)


async def test_open_loop_counts_latency_from_the_schedule_when_the_client_stalls() -> None:
    # The first request blocks the event loop for 300 ms: requests due meanwhile are sent late, and their latency
    # must include that wait (a closed-loop tool would report ~1 ms for each and hide the stall).
    calls = 0

    async def call(_: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            time.sleep(0.3)  # noqa: ASYNC251 - the point: a stalled client
        await asyncio.sleep(0.001)

    result = await open_loop(call, rate_per_s=100.0, duration_s=0.5, max_requests=1000, arrivals="uniform")
    assert len(result.samples) == 50 and all(s.status == "OK" for s in result.samples)
    stalled = result.samples[1:20]  # due at 10-190 ms, sent after the 300 ms stall
    assert all(s.latency_ms > 100 for s in stalled)
    assert all(s.latency_ms - s.service_ms > 100 for s in stalled)
    assert max(s.latency_ms for s in result.samples) > 250
    assert result.samples[-1].latency_ms < 50  # the schedule catches up


async def test_open_loop_reports_overload_and_drain_timeouts_as_errors() -> None:
    async def slow(_: float) -> None:
        await asyncio.sleep(5)

    result = await open_loop(
        slow, rate_per_s=200.0, duration_s=0.1, max_requests=100, max_in_flight=5, drain_s=0.2, arrivals="uniform"
    )
    statuses = [s.status for s in result.samples]
    assert len(statuses) == 20
    assert statuses.count("CLIENT_OVERLOAD") == 15 and statuses.count("CLIENT_DRAIN_TIMEOUT") == 5


async def test_errors_are_counted_by_status_code() -> None:
    async def failing(_: float) -> None:
        raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down")

    result = await closed_loop(failing, 1, duration_s=5.0, max_requests=3)
    assert [s.status for s in result.samples] == ["UNAVAILABLE"] * 3
    assert status_of(TimeoutError()) == "CLIENT_TIMEOUT" and status_of(KeyError("x")) == "CLIENT_KeyError"


def test_a_scenario_names_its_own_failures() -> None:
    from loadtest.scenarios.monitoring import FrameNotAnalyzed, FrameShed

    assert status_of(FrameShed("x")) == "FRAME_SHED" and status_of(FrameNotAnalyzed("x")) == "FRAME_NOT_ANALYZED"


async def test_open_loop_rejects_a_zero_rate() -> None:
    async def call(_: float) -> None:
        return None

    with pytest.raises(ValueError):
        await open_loop(call, 0.0, 1.0, 10)


def test_poisson_schedule_has_the_rate_and_exponential_gaps() -> None:
    due = schedule(20000, 50.0, "poisson", seed=3)
    gaps = [b - a for a, b in itertools.pairwise(due)]
    mean = sum(gaps) / len(gaps)
    var = sum((g - mean) ** 2 for g in gaps) / len(gaps)
    assert mean == pytest.approx(1 / 50, rel=0.03) and var / mean**2 == pytest.approx(1.0, rel=0.05)
    assert due == schedule(20000, 50.0, "poisson", seed=3)  # seeded: the same schedule every run
    assert schedule(3, 10.0, "uniform") == pytest.approx([0.0, 0.1, 0.2])
    with pytest.raises(ValueError):
        schedule(3, 10.0, "bursty")
