"""Validate the planner's queueing model against this machine: predicted vs measured p95 under open-loop load.

A local station is what the planner sizes: a Triton model alone (``frame_relevance`` for keyframes,
``object_detector`` for cameras) called straight through tritonclient, its requests queued by Triton for the
model's instances. Its profile is measured here, exactly as a CPU-class profile is for the planner: the number of
servers is the model's instance count (read from Triton), and the service-time distribution comes from the
lightest open-loop run (about 0.2x capacity, Poisson arrivals), where each request's service time is recovered from
its send and completion times by the FIFO recursion (for one server: it starts when it arrives or when the previous
one leaves, whichever is later), so the few waits at that load are not counted as service. Open loop, not
back-to-back calls: a model called back to back keeps its threads and caches hot and runs ~20% faster than one that
random arrivals find idle. The profile keeps what the planner's tables carry, the mean and the SCV (log-normal
shape), and the planner's station model (one server with Poisson arrivals: exact M/G/1, Pollaczek-Khinchine in
Benes's form; more servers: Erlang C + Allen-Cunneen with an exponential wait tail) then predicts the p95 of
every heavier open-loop run from its arrival rate alone, and the prediction is compared with the p95 measured from
the schedule. Without a known server count (a whole service), the
parallelism shown under saturation is used instead, ``c = round(X_max * E[S])`` capped at the cores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tessera.planner.capacity import ServiceTime, station


def fit_servers(service: ServiceTime, max_throughput: float, max_servers: int | None = None) -> int:
    """Little's law at saturation, capped by the cores (a station here cannot run more at once than it has)."""
    servers = max(1, round(max_throughput * service.mean_s))
    return min(servers, max_servers) if max_servers else servers


def fifo_service_times(requests: Sequence[tuple[float, float]]) -> list[float]:
    """Service times of a single FIFO server from its requests' (arrival, departure) times, any load.

    Lindley's recursion run backwards: a request starts when it arrives or when the one before it leaves,
    whichever is later, so its service time is ``departure - max(arrival, previous departure)``. Exact for one
    server serving in arrival order; it lets a light open-loop run, where some requests do queue, give the
    service-time distribution without the waits in it.
    """
    out: list[float] = []
    free_at = -math.inf
    for arrival, departure in sorted(requests):
        start = max(arrival, free_at)
        if departure >= start:
            out.append(departure - start)
        free_at = max(free_at, departure)
    return out


def validate(
    service_samples_ms: Sequence[float],
    max_throughput: float,
    open_points: Sequence[tuple[float, float]],  # (arrivals per second, measured p95 ms)
    *,
    arrival_scv: float = 0.0,
    scenario: str = "keyframes",
    max_servers: int | None = None,
    servers: int | None = None,
    same_load_service_ms: Sequence[Sequence[float]] | None = None,
) -> dict[str, Any]:
    """``servers`` is the station's known server count (a Triton model's instances); else fitted (Little's law).

    ``same_load_service_ms`` (one list per open point) are service times recovered from that point's own run: the
    same M/G/c prediction from them isolates the queueing model's error from the profile's (a CPU model's service
    time here changes with load: threads cold at light load, batches and contention at heavier).
    """
    sampled = ServiceTime.from_samples([v / 1000 for v in service_samples_ms])
    # What a profile in the planner's tables carries (mean and SCV, log-normal shape), not the samples themselves:
    # the validation tests the model the planner runs, and a p95 of ~100 samples is too noisy to plan on.
    service = ServiceTime(sampled.mean_s, sampled.scv)
    servers = servers or fit_servers(service, max_throughput, max_servers)
    points = []
    for i, (rate, measured) in enumerate(open_points):
        est = station(rate, servers, service, arrival_scv)
        predicted = est.sojourn_quantile(0.95) * 1000
        point = {
            "rate_per_s": rate,
            "utilisation": est.utilisation,
            "predicted_p95_ms": predicted,
            "measured_p95_ms": measured,
            "rel_error": (predicted - measured) / measured if measured > 0 else math.nan,  # inf: unstable
        }
        if same_load_service_ms and len(same_load_service_ms[i]) >= 2:
            own = ServiceTime.from_samples([v / 1000 for v in same_load_service_ms[i]])
            own_est = station(rate, servers, ServiceTime(own.mean_s, own.scv), arrival_scv)
            own_predicted = own_est.sojourn_quantile(0.95) * 1000
            point |= {
                "same_load_service_mean_ms": own.mean_s * 1000,
                "same_load_predicted_p95_ms": own_predicted,
                "same_load_rel_error": (own_predicted - measured) / measured if measured > 0 else math.nan,
            }
        points.append(point)
    top = max((p["rate_per_s"] for p in points), default=max_throughput)
    curve = []
    for i in range(1, 41):
        rate = top * 1.15 * i / 40
        est = station(rate, servers, service, arrival_scv)
        if est.stable:
            curve.append({"rate_per_s": rate, "predicted_p95_ms": est.sojourn_quantile(0.95) * 1000})
    errors = [abs(p["rel_error"]) for p in points if not math.isnan(p["rel_error"])]
    return {
        "scenario": scenario,
        "method": (__doc__ or "").split("\n\n", 1)[1].replace("\n", " ").strip(),
        "servers": servers,
        "service_mean_ms": service.mean_s * 1000,
        "service_scv": service.scv,
        "service_p95_ms": service.quantile(0.95) * 1000,
        "service_p95_measured_ms": sampled.quantile(0.95) * 1000,
        "max_throughput_rps": max_throughput,
        "arrival_scv": arrival_scv,
        "points": points,
        "curve": curve,
        "max_abs_rel_error": max(errors) if errors else math.nan,
        "same_load_max_abs_rel_error": max(
            (abs(p["same_load_rel_error"]) for p in points if "same_load_rel_error" in p), default=math.nan
        ),
        "mean_abs_rel_error": sum(errors) / len(errors) if errors else math.nan,
    }
