"""The queueing model against closed forms: Erlang C, M/M/1 sojourn, Pollaczek-Khinchine, sizing."""

from __future__ import annotations

import math

import pytest

from tessera.planner.capacity import (
    ServiceTime,
    erlang_b,
    erlang_c,
    mg1_sojourn_pmf,
    mg1_sojourn_quantile,
    mixture,
    size_servers,
    station,
)


def _erlang_c_direct(c: int, a: float) -> float:
    """Textbook form with factorials (fine for small c)."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.parametrize(("c", "a"), [(1, 0.5), (2, 1.0), (5, 3.7), (10, 8.0), (20, 19.5)])
def test_erlang_c_matches_the_closed_form(c: int, a: float) -> None:
    assert erlang_c(c, a) == pytest.approx(_erlang_c_direct(c, a), rel=1e-9)


def test_erlang_values_at_the_edges() -> None:
    assert erlang_c(1, 0.3) == pytest.approx(0.3)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(4, 0.0) == 0.0
    assert erlang_c(4, 4.0) == 1.0
    assert erlang_b(0, 3.0) == 1.0
    assert 0 < erlang_c(3000, 2900.0) < 1  # large pools stay finite (recursion, no factorials)
    with pytest.raises(ValueError):
        erlang_c(0, 1.0)


def _exponential(mean: float, n: int = 20000) -> ServiceTime:
    return ServiceTime.from_samples([-mean * math.log(1 - (i + 0.5) / n) for i in range(n)])


def test_mm1_sojourn_quantile_is_exponential() -> None:
    # M/M/1: sojourn time ~ Exp(mu - lambda), so its p95 is ln(20) / (mu - lambda).
    mu, lam = 10.0, 7.0
    est = station(lam, 1, _exponential(1 / mu), arrival_scv=1.0)
    assert est.utilisation == pytest.approx(0.7, rel=1e-3)
    assert est.mean_wait_s == pytest.approx(lam / (mu * (mu - lam)), rel=0.01)
    assert est.sojourn_quantile(0.95) == pytest.approx(math.log(20) / (mu - lam), rel=0.02)


def test_md1_mean_wait_is_pollaczek_khinchine() -> None:
    s, lam = 0.1, 6.0
    rho = lam * s
    est = station(lam, 1, ServiceTime(s, 0.0), arrival_scv=1.0)
    assert est.mean_wait_s == pytest.approx(rho * s / (2 * (1 - rho)))


def test_constant_arrivals_and_service_never_wait() -> None:
    est = station(5.0, 1, ServiceTime(0.1, 0.0), arrival_scv=0.0)
    assert est.mean_wait_s == 0.0
    assert est.sojourn_quantile(0.95) == pytest.approx(0.1)


def test_unstable_station_has_infinite_latency() -> None:
    est = station(20.0, 2, ServiceTime(0.2, 0.5))
    assert not est.stable and math.isinf(est.sojourn_quantile(0.95)) and est.utilisation == pytest.approx(2.0)


def test_quantiles_grow_with_load_and_shrink_with_servers() -> None:
    service = ServiceTime(0.05, 0.8)
    p95 = [station(rate, 4, service).sojourn_quantile(0.95) for rate in (10, 40, 60, 75)]
    assert p95 == sorted(p95) and p95[-1] > 2 * p95[0]
    assert station(60, 8, service).sojourn_quantile(0.95) < station(60, 4, service).sojourn_quantile(0.95)
    assert station(40, 4, service).sojourn_quantile(0.99) > station(40, 4, service).sojourn_quantile(0.95)


def test_lognormal_service_keeps_its_mean_and_scv() -> None:
    service = ServiceTime(0.2, 0.5)
    points = service.points(4000)
    mean = sum(points) / len(points)
    var = sum((p - mean) ** 2 for p in points) / len(points)
    assert mean == pytest.approx(0.2, rel=0.01)
    assert var / mean**2 == pytest.approx(0.5, rel=0.05)
    assert service.quantile(0.5) < 0.2 < service.quantile(0.95)


def test_samples_define_the_distribution() -> None:
    service = ServiceTime.from_samples([0.01, 0.02, 0.03, 0.04, 0.10])
    assert service.mean_s == pytest.approx(0.04)
    assert service.quantile(1.0) == pytest.approx(0.10) and service.quantile(0.0) == pytest.approx(0.01)
    assert service.scaled(2.0).quantile(1.0) == pytest.approx(0.20)
    with pytest.raises(ValueError):
        ServiceTime.from_samples([0.1])
    with pytest.raises(ValueError):
        ServiceTime(0.0)


def test_mixture_matches_mean_and_second_moment() -> None:
    mixed = mixture([(1.0, ServiceTime(1.0)), (1.0, ServiceTime(3.0))])
    assert mixed.mean_s == pytest.approx(2.0) and mixed.scv == pytest.approx(0.25)
    with pytest.raises(ValueError):
        mixture([(0.0, ServiceTime(1.0))])


def test_sizing_meets_utilisation_and_latency() -> None:
    service = ServiceTime(0.3, 0.3)
    sized = size_servers(100.0, service, slo_s=1.0, max_utilisation=0.75)
    assert sized.meets_slo and sized.p95_s <= 1.0
    assert sized.estimate.utilisation <= 0.75 and sized.servers == math.ceil(100 * 0.3 / 0.75)
    tight = size_servers(100.0, service, slo_s=service.quantile(0.95) * 1.02, max_utilisation=0.95)
    assert tight.limited_by == "latency" and tight.p95_s <= service.quantile(0.95) * 1.02
    smaller = size_servers(100.0, service, slo_s=tight.p95_s, max_utilisation=0.95, granularity=4)
    assert smaller.servers % 4 == 0


def test_sizing_flags_an_slo_no_server_count_can_meet() -> None:
    sized = size_servers(10.0, ServiceTime(2.0, 0.1), slo_s=1.0)
    assert not sized.meets_slo and sized.limited_by == "service time exceeds the SLO"


def _simulated_sojourn_p95(lam: float, service: ServiceTime, arrivals: int = 200_000) -> float:
    """Lindley's recursion over seeded Poisson arrivals: an independent check of the transform method."""
    import random

    rng = random.Random(5)
    points = service.points()
    wait, sojourns = 0.0, []
    for _ in range(arrivals):
        s = rng.choice(points)
        sojourns.append(wait + s)
        gap = rng.expovariate(lam)
        wait = max(0.0, wait + s - gap)
    sojourns.sort()
    return sojourns[int(0.95 * len(sojourns))]


@pytest.mark.parametrize(("lam", "scv"), [(5.0, 0.0), (12.0, 0.1), (18.0, 0.5)])
def test_mg1_quantile_matches_a_simulation(lam: float, scv: float) -> None:
    service = ServiceTime(0.04, scv)
    assert mg1_sojourn_quantile(lam, service) == pytest.approx(_simulated_sojourn_p95(lam, service), rel=0.04)


def test_mg1_mean_is_pollaczek_khinchine_and_tail_is_lighter_than_exponential() -> None:
    service, lam = ServiceTime(0.04, 0.1), 12.5
    dt, pmf = mg1_sojourn_pmf(lam, service)
    mean = float((pmf * range(len(pmf))).sum()) * dt
    second = service.mean_s**2 * (1 + service.scv)
    assert mean == pytest.approx(service.mean_s + lam * second / (2 * (1 - lam * service.mean_s)), rel=0.01)
    est = station(lam, 1, service, arrival_scv=1.0)
    assert est.sojourn_quantile(0.95) == pytest.approx(mg1_sojourn_quantile(lam, service))
    # the exponential-tail approximation (what c > 1 uses) overstates this low-variability p95
    approx = station(lam, 1, service, arrival_scv=1.0 - 1e-9).sojourn_quantile(0.95)
    assert approx > est.sojourn_quantile(0.95) * 1.05


def test_mg1_class_with_longer_service_waits_the_same_but_takes_longer() -> None:
    shared, long = ServiceTime(0.02, 0.1), ServiceTime(0.06, 0.1)
    assert mg1_sojourn_quantile(20.0, shared, own=long) > mg1_sojourn_quantile(20.0, shared) + 0.03
    with pytest.raises(ValueError, match="utilisation"):
        mg1_sojourn_pmf(60.0, shared)
