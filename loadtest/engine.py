"""The asyncio load engine: closed loop (fixed concurrency) and open loop (constant arrival rate).

Open loop keeps a schedule fixed in advance, whatever the answers do: arrivals at a constant rate, either Poisson
(exponential gaps from a seeded generator: what independent users produce, and what the planner's M/G/c assumes)
or uniform (request i due at ``t0 + i / rate``). It measures each latency from the *scheduled* time: a request
the client sends late (because the event loop or the server fell behind) still counts its full delay, so
coordinated omission cannot hide latency. Every run is bounded in count and in time: a schedule ends at
``duration_s`` or ``max_requests``, and requests still open ``drain_s`` after the schedule ends are cancelled and
reported as ``CLIENT_DRAIN_TIMEOUT``.

Locust is not used: its users are closed loops (``constant_throughput`` waits for the answer, the very coordinated
omission open loop must avoid), its percentiles are rounded to whole milliseconds (too coarse for a 1 ms overhead
goal), and a ``grpc.aio`` call inside a locust user blocks gevent's hub: the conference scenario's bidirectional
streams (``ConferenceClient``) hung until SIGKILL when tried with locust 2.47.0 (see loadtest/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

Call = Callable[[float], Awaitable[Any]]  # called with the scheduled time (perf_counter seconds)


@dataclass
class Sample:
    """One request: when it was due, sent and done (``time.perf_counter`` seconds), its status and detail."""

    scheduled_s: float
    sent_s: float
    done_s: float
    status: str  # "OK", a gRPC status code name, or CLIENT_*
    detail: Any = None  # what the scenario's call returned (e.g. per-segment timings)

    @property
    def latency_ms(self) -> float:
        """From the scheduled time: what a user waiting on the schedule sees."""
        return (self.done_s - self.scheduled_s) * 1000.0

    @property
    def service_ms(self) -> float:
        """From the actual send: what the server took (plus the network)."""
        return (self.done_s - self.sent_s) * 1000.0


@dataclass
class RunResult:
    mode: str  # "closed" or "open"
    level: float  # concurrency (closed) or arrivals per second (open)
    samples: list[Sample] = field(default_factory=list)
    started_s: float = 0.0
    ended_s: float = 0.0

    @property
    def window_s(self) -> float:
        return max(1e-9, self.ended_s - self.started_s)


def status_of(exc: BaseException) -> str:
    """A gRPC status name, a scenario's own ``status`` (e.g. ``FRAME_SHED``), or ``CLIENT_<exception>``."""
    own = getattr(exc, "status", None)
    if isinstance(own, str) and own:
        return own
    if isinstance(exc, grpc.aio.AioRpcError):
        return str(exc.code().name)
    if isinstance(exc, TimeoutError):
        return "CLIENT_TIMEOUT"
    return f"CLIENT_{type(exc).__name__}"


async def timed(call: Call, scheduled_s: float) -> Sample:
    sent = time.perf_counter()
    try:
        detail = await call(scheduled_s)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return Sample(scheduled_s, sent, time.perf_counter(), status_of(exc), getattr(exc, "detail", None))
    return Sample(scheduled_s, sent, time.perf_counter(), "OK", detail)


async def closed_loop(call: Call, concurrency: int, duration_s: float, max_requests: int) -> RunResult:
    """``concurrency`` users, each sending its next request when the last one is answered."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    result = RunResult("closed", concurrency)
    result.started_s = time.perf_counter()
    deadline = result.started_s + duration_s
    issued = 0

    async def user() -> None:
        nonlocal issued
        while time.perf_counter() < deadline and issued < max_requests:
            issued += 1
            result.samples.append(await timed(call, time.perf_counter()))

    await asyncio.gather(*(user() for _ in range(concurrency)))
    result.ended_s = time.perf_counter()
    return result


async def open_loop(
    call: Call,
    rate_per_s: float,
    duration_s: float,
    max_requests: int,
    *,
    max_in_flight: int = 256,
    drain_s: float = 30.0,
    arrivals: str = "poisson",
    seed: int = 1,
) -> RunResult:
    """Requests due at a constant rate (``arrivals``: "poisson" or "uniform"); latency counted from each due time.

    A request due while ``max_in_flight`` are open is not sent: it is recorded as ``CLIENT_OVERLOAD`` (an error,
    never silently skipped), so a saturated server shows up as errors rather than as missing samples.
    """
    if rate_per_s <= 0:
        raise ValueError("rate must be > 0")
    count = max(1, min(max_requests, int(duration_s * rate_per_s)))
    result = RunResult("open", rate_per_s)
    start = time.perf_counter() + 0.05
    result.started_s = start
    offsets = schedule(count, rate_per_s, arrivals, seed)
    tasks: list[asyncio.Task[Sample]] = []
    for offset in offsets:
        due = start + offset
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if sum(not t.done() for t in tasks) >= max_in_flight:
            result.samples.append(Sample(due, due, time.perf_counter(), "CLIENT_OVERLOAD"))
            continue
        tasks.append(asyncio.ensure_future(timed(call, due)))
    schedule_end = start + max(offsets[-1], count / rate_per_s)
    if tasks:
        done, pending = await asyncio.wait(tasks, timeout=max(0.0, schedule_end + drain_s - time.perf_counter()))
        result.samples += [t.result() for t in done]
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        cut = time.perf_counter()
        result.samples += [Sample(cut, cut, cut, "CLIENT_DRAIN_TIMEOUT") for _ in pending]
    result.samples.sort(key=lambda s: s.scheduled_s)
    result.ended_s = max([schedule_end, *(s.done_s for s in result.samples)])
    return result


def schedule(count: int, rate_per_s: float, arrivals: str = "poisson", seed: int = 1) -> list[float]:
    """Due times (seconds from the start) of ``count`` arrivals at ``rate_per_s``."""
    if arrivals == "uniform":
        return [i / rate_per_s for i in range(count)]
    if arrivals != "poisson":
        raise ValueError(f"arrivals must be 'poisson' or 'uniform', got {arrivals!r}")
    rng = random.Random(seed)
    due, out = 0.0, []
    for _ in range(count):
        out.append(due)
        due += rng.expovariate(rate_per_s)
    return out
