"""The planner on the shipped tables and workload, and on small hand-made ones."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from tessera.planner import render
from tessera.planner.plan import PlanError, latency_curve, load_tables, plan, scaled_workload

ROOT = Path(__file__).resolve().parents[3]
TABLES = yaml.safe_load((ROOT / "loadtest" / "tables" / "models.yaml").read_text())
WORKLOAD = yaml.safe_load((ROOT / "loadtest" / "tables" / "workload.yaml").read_text())


def _pool(result: Any, name: str) -> Any:
    return next(p for p in result.pools if p.pool == name)


def test_shipped_tables_state_a_source_for_every_profile() -> None:
    tables = load_tables(TABLES)
    assert tables.profiles and all(p.source.strip() for p in tables.profiles.values())
    for model, pool in tables.placement.items():
        assert (model, tables.pools[pool].accelerator) in tables.profiles


def test_issue_example_is_sized_within_utilisation_and_slo() -> None:
    tables = load_tables(TABLES)
    result = plan(WORKLOAD, tables)
    assert {p.pool for p in result.pools} == {"a10", "t4", "rtx4060"}
    for pool in result.pools:
        assert pool.nodes >= 1 and pool.utilisation <= tables.pools[pool.pool].max_utilisation + 1e-9
        assert all(m.meets_slo and m.p95_ms <= m.slo_p95_ms for m in pool.models)
    asr = next(m for m in _pool(result, "a10").models if m.model == "asr")
    # 500 conferences x 0.7 speech / 4 s segments = 87.5 segments/s, each 4 s of audio
    assert asr.requests_per_s == pytest.approx(87.5) and asr.units_per_request == pytest.approx(4.0)
    mt = next(m for m in _pool(result, "a10").models if m.model == "mt")
    assert mt.requests_per_s == pytest.approx(2 * 87.5)  # languages - 1 targets per segment
    frames = next(m for m in _pool(result, "t4").models if m.model == "frame_relevance")
    # 100 queries/min on 1 h at 1 fps, 5% scored = 180 frames per query in batches of <= 32 (6 requests)
    assert frames.requests_per_s == pytest.approx(100 / 60 * 6) and frames.units_per_request == pytest.approx(30)
    assert _pool(result, "a10").cost_per_hour == pytest.approx(_pool(result, "a10").nodes * 1.01)
    assert any("rtx4060" in note for note in result.notes)  # not priced: said, not hidden


def test_more_load_needs_proportionally_more_devices() -> None:
    tables = load_tables(TABLES)
    base = plan(WORKLOAD, tables)
    double = plan(scaled_workload(WORKLOAD, 2.0), tables)
    for pool in base.pools:
        twice = _pool(double, pool.pool)
        assert twice.devices >= pool.devices
        if pool.devices >= 5:
            assert 1.7 * pool.devices <= twice.devices <= 2.3 * pool.devices


def test_a_faster_accelerator_needs_fewer_devices() -> None:
    tables = load_tables(TABLES)
    on_a10 = plan(WORKLOAD, tables)
    on_a100 = plan(WORKLOAD, tables, {"asr": "a100", "mt": "a100", "tts": "a100"})
    assert _pool(on_a100, "a100").devices < _pool(on_a10, "a10").devices / 2


def test_tight_slo_is_met_by_adding_devices() -> None:
    tables = load_tables(TABLES)
    workload = copy.deepcopy(WORKLOAD)
    relaxed = _pool(plan(workload, tables), "t4")
    service = relaxed.models[0].service_ms
    # p95 of the service time alone is ~1.6x its mean (log-normal, scv 0.1): leave a little room for waiting
    workload["workloads"]["keyframe_queries"]["slo_p95_ms"]["frame_relevance"] = service * 1.8
    tight = _pool(plan(workload, tables), "t4")
    assert tight.devices > relaxed.devices and tight.limited_by == "latency" and tight.models[0].meets_slo


def test_unreachable_slo_is_reported_not_hidden() -> None:
    workload = copy.deepcopy(WORKLOAD)
    workload["workloads"]["conferences"]["slo_p95_ms"]["asr"] = 50
    result = plan(workload, load_tables(TABLES))
    a10 = _pool(result, "a10")
    assert "service time alone exceeds" in a10.limited_by
    assert not next(m for m in a10.models if m.model == "asr").meets_slo


def test_measured_cpu_profiles_replace_the_defaults() -> None:
    measured = {
        "models": {"asr": {"unit": "audio_s", "profiles": {"cpu": {"per_unit_ms": 100.0, "source": "measured"}}}},
        "cpu_costs": {"gateway_ms_per_speech_s": {"value": 20.0, "source": "measured"}},
    }
    tables = load_tables(TABLES, measured)
    assert tables.profiles[("asr", "cpu")].per_unit_ms == 100.0
    assert tables.profiles[("asr", "a10")].per_unit_ms == pytest.approx(80.8)  # GPU entries untouched
    result = plan(WORKLOAD, tables, {"asr": "cpu", "mt": "cpu", "tts": "cpu"})
    cpu_pool = _pool(result, "cpu")
    assert next(m for m in cpu_pool.models if m.model == "asr").service_ms == pytest.approx(400.0)
    gateway = next(c for c in result.cpu.items if c.item.startswith("gateway: VAD"))
    assert gateway.cpu_cores == pytest.approx(500 * 0.7 * 20 / 1000)
    assert result.cpu.nodes == math.ceil(result.cpu.cores / (8 * 0.7))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("workloads", "cameras", "kind"), "drone", "unknown kind"),
        (("workloads", "cameras", "slo_p95_ms"), {}, "no SLO for 'detector'"),
        (("workloads", "conferences", "count"), -1, "must be a finite number >= 0"),
    ],
)
def test_bad_workloads_name_the_entry(path: tuple[str, ...], value: Any, message: str) -> None:
    workload = copy.deepcopy(WORKLOAD)
    node = workload
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(PlanError, match=message):
        plan(workload, load_tables(TABLES))


def test_bad_tables_name_the_entry() -> None:
    no_source = copy.deepcopy(TABLES)
    no_source["models"]["asr"]["profiles"]["a10"]["source"] = ""
    with pytest.raises(PlanError, match=r"models\.asr\.profiles\.a10: every profile must state its source"):
        load_tables(no_source)
    bad_pool = copy.deepcopy(TABLES)
    bad_pool["placement"]["asr"] = "tpu"
    with pytest.raises(PlanError, match="unknown pool 'tpu'"):
        load_tables(bad_pool)
    with pytest.raises(PlanError, match="unknown pool"):
        plan(WORKLOAD, load_tables(TABLES), {"asr": "tpu"})


def test_latency_curve_rises_with_load_and_table_renders() -> None:
    tables = load_tables(TABLES)
    result = plan(WORKLOAD, tables)
    a10 = _pool(result, "a10")
    curves = latency_curve(a10, list(result.demands), tables, [0.5, 1.0, 1.2, 2.0])
    asr = curves["asr"]
    assert asr[0] <= asr[1] <= asr[2] and math.isinf(asr[3])  # twice the load on the same nodes: unstable
    text = render.table(result)
    assert "| a10 | a10 |" in text and "frame_relevance" in text and "$" in text
    data = render.as_dict(result)
    assert data["pools"][0]["models"] and data["cost_per_hour"] == pytest.approx(result.cost_per_hour)
