"""A plan as a table (Markdown), as JSON-ready data, and as a plot (matplotlib, imported only when plotting)."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tessera.planner.plan import Plan, Tables, latency_curve

LOAD_FACTORS = [0.1 * i for i in range(1, 16)]  # 10% .. 150% of the planned load


def as_dict(plan: Plan) -> dict[str, Any]:
    data: dict[str, Any] = _finite(asdict(plan))
    data["cost_per_hour"] = plan.cost_per_hour
    return data


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _f(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "inf"


def table(plan: Plan) -> str:
    lines = [
        "| pool | accelerator | nodes | devices | utilisation | model | req/s | units/req | service ms | p95 ms "
        "| SLO p95 ms | ok | limited by |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for pool in plan.pools:
        for i, m in enumerate(pool.models):
            head = (
                f"| {pool.pool} | {pool.accelerator} | {pool.nodes} | {pool.devices} | {pool.utilisation:.0%} "
                if i == 0
                else "| | | | | "
            )
            lines.append(
                head + f"| {m.model} | {_f(m.requests_per_s)} | {_f(m.units_per_request)} | {_f(m.service_ms)} | "
                f"{_f(m.p95_ms)} | {_f(m.slo_p95_ms, 0)} | {'yes' if m.meets_slo else 'NO'} | "
                + (pool.limited_by if i == 0 else "")
                + " |"
            )
    cpu = plan.cpu
    lines.append(
        f"| cpu (services) | - | {cpu.nodes} | {_f(cpu.cores, 2)} cores | <= {cpu.max_utilisation:.0%} | "
        + ", ".join(f"{c.item} {c.cpu_cores:.2f}" for c in cpu.items if c.cpu_cores > 0)
        + " | | | | | | | cores |"
    )
    costs = [f"{p.pool} ${p.cost_per_hour:.2f}/h" for p in plan.pools if p.cost_per_hour is not None]
    out = "\n".join(lines)
    out += f"\n\nGPU cost: ${plan.cost_per_hour:.2f}/hour on demand ({', '.join(costs) or 'none priced'})."
    if plan.notes:
        out += "\n\nNotes:\n" + "\n".join(f"- {n}" for n in plan.notes)
    return out


def sources(plan: Plan) -> str:
    seen: dict[str, str] = {}
    for pool in plan.pools:
        for m in pool.models:
            seen.setdefault(f"{m.model} on {pool.accelerator}", m.source)
    return "\n".join(f"- **{k}**: {' '.join(v.split())}" for k, v in seen.items())


def markdown(plan: Plan, workload_name: str = "") -> str:
    return (
        f"# Capacity plan{f': {workload_name}' if workload_name else ''}\n\n"
        "Each pool is an M/G/c station (Erlang C with the Allen-Cunneen correction; one server with Poisson arrivals "
        "is exact M/G/1); servers are devices x streams per device; sized to the fewest devices that keep "
        "utilisation under the pool's cap and every model's p95 under its SLO.\n\n"
        + table(plan)
        + "\n\n## Cost profiles used\n\n"
        + sources(plan)
        + "\n"
    )


def plot(plan: Plan, tables: Tables, path: Path) -> None:
    """Left: nodes and utilisation per pool. Right: each model's p95 against load (10-150% of plan), SLO dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [f"{p.pool}\n({p.accelerator})" for p in plan.pools] + ["cpu\n(services)"]
    nodes = [p.nodes for p in plan.pools] + [plan.cpu.nodes]
    bars = left.bar(names, nodes, color="tab:blue")
    for bar, pool in zip(bars, plan.pools, strict=False):
        left.annotate(
            f"{pool.utilisation:.0%}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom"
        )
    left.set_ylabel("nodes")
    left.set_title("nodes per pool (label: utilisation)")
    left.grid(axis="y", alpha=0.3)
    demands = list(plan.demands)
    for pool in plan.pools:
        curves = latency_curve(pool, demands, tables, LOAD_FACTORS)
        for model, values in curves.items():
            xs = [f * 100 for f, v in zip(LOAD_FACTORS, values, strict=True) if math.isfinite(v)]
            ys = [v for v in values if math.isfinite(v)]
            line = right.plot(xs, ys, label=f"{model} ({pool.pool})")[0]
            slo = next(m.slo_p95_ms for m in pool.models if m.model == model)
            right.axhline(slo, color=line.get_color(), linestyle="--", linewidth=0.8)
    right.axvline(100, color="gray", linewidth=0.8)
    right.set_yscale("log")
    right.set_xlabel("load (% of the planned workload) on the planned nodes")
    right.set_ylabel("predicted p95 (ms); dashed: SLO")
    right.set_title("latency against load")
    right.grid(alpha=0.3)
    right.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
