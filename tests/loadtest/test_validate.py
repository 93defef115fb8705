"""The planner validation: predictions from a measured profile, compared with measured p95."""

from __future__ import annotations

import math

import pytest
from loadtest.validate import fifo_service_times, validate

from tessera.planner.capacity import ServiceTime, station


def test_validation_reports_relative_errors_per_point() -> None:
    samples_ms = [10.0 + (i % 10) for i in range(200)]
    sampled = ServiceTime.from_samples([v / 1000 for v in samples_ms])
    service = ServiceTime(sampled.mean_s, sampled.scv)  # a profile carries mean and SCV, as the planner's tables
    truth = station(50.0, 1, service, 0.0).sojourn_quantile(0.95) * 1000
    result = validate(samples_ms, max_throughput=1 / service.mean_s, open_points=[(50.0, truth), (60.0, truth)])
    assert result["servers"] == 1
    first, second = result["points"]
    assert first["rel_error"] == pytest.approx(0.0, abs=1e-6)
    assert second["predicted_p95_ms"] > truth and second["rel_error"] > 0
    assert result["max_abs_rel_error"] == pytest.approx(abs(second["rel_error"]))
    assert result["curve"] and all(math.isfinite(c["predicted_p95_ms"]) for c in result["curve"])


def test_parallel_station_gets_more_servers() -> None:
    samples_ms = [20.0] * 50 + [30.0] * 50
    result = validate(samples_ms, max_throughput=160.0, open_points=[(80.0, 30.0)])
    assert result["servers"] == 4  # 160/s x 25 ms
    assert result["points"][0]["utilisation"] == pytest.approx(0.5)


def test_an_unstable_prediction_is_an_infinite_error() -> None:
    result = validate([10.0, 12.0] * 20, max_throughput=90.0, open_points=[(200.0, 30.0)])
    assert math.isinf(result["points"][0]["rel_error"]) and math.isinf(result["max_abs_rel_error"])


def test_servers_are_capped_by_the_cores() -> None:
    result = validate([20.0, 30.0] * 50, max_throughput=160.0, open_points=[(50.0, 30.0)], max_servers=2)
    assert result["servers"] == 2 and result["points"][0]["utilisation"] == pytest.approx(50 * 0.025 / 2)


def test_fifo_recursion_recovers_service_times_from_a_queue() -> None:
    """A simulated FIFO server: arrivals that queue behind others still yield their own service times."""
    import random

    rng = random.Random(3)
    arrivals, services = [], []
    t = 0.0
    for _ in range(500):
        t += rng.expovariate(40.0)
        arrivals.append(t)
        services.append(rng.uniform(0.01, 0.03))
    departures, free = [], 0.0
    for a, s in zip(arrivals, services, strict=True):
        free = max(a, free) + s
        departures.append(free)
    assert sum(d - a > s + 1e-9 for a, d, s in zip(arrivals, departures, services, strict=True)) > 100  # many waited
    shuffled = list(zip(arrivals, departures, strict=True))
    rng.shuffle(shuffled)  # the order they are given in does not matter
    recovered = fifo_service_times(shuffled)
    assert recovered == pytest.approx(services)


def test_known_servers_override_the_fit() -> None:
    result = validate([20.0, 30.0] * 50, max_throughput=160.0, open_points=[(30.0, 40.0)], servers=1)
    assert result["servers"] == 1 and result["points"][0]["utilisation"] == pytest.approx(30 * 0.025)


def test_same_load_service_times_isolate_the_queueing_model() -> None:
    profile = [20.0, 30.0] * 50
    slower = [30.0, 40.0] * 50  # the station ran slower at that load than the profile says
    result = validate(profile, 40.0, [(20.0, 80.0), (25.0, 90.0)], servers=1, same_load_service_ms=[profile, slower])
    first, second = result["points"]
    assert first["same_load_rel_error"] == pytest.approx(first["rel_error"])
    assert second["same_load_predicted_p95_ms"] > second["predicted_p95_ms"]
    assert result["same_load_max_abs_rel_error"] == pytest.approx(
        max(abs(first["same_load_rel_error"]), abs(second["same_load_rel_error"]))
    )
