"""Turn a workload mix into node counts per pool: demand per model, cost profiles per accelerator, M/G/c sizing.

Inputs are plain mappings (the CLI reads them from YAML/JSON tables; nothing here does I/O):

- ``tables``: ``accelerators`` (memory, price, where the figures come from), ``pools`` (accelerator, devices per
  node, utilisation cap), ``placement`` (model -> pool, mirroring the Helm chart's ``capabilities.*.models.pool``),
  ``models`` (per model: the unit of work and one cost profile per accelerator, each with its ``source``) and
  ``cpu`` (CPU costs of the services themselves, per unit of work);
- ``workload``: named workloads of five kinds: ``conference``, ``keyframes``, ``camera``, ``triage``, ``cry``.

Each pool is one M/G/c station: a Triton replica holds every model of its capability on one device, so all of a
pool's models share its servers (devices x streams per device); the wait is the pool's, the service time each
model's own. The pool gets the fewest devices that keep utilisation under its cap and every model's p95 under
its SLO. Adding a workload kind is one function in ``_DEMANDS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tessera.planner.capacity import ServiceTime, StationEstimate, mixture, station

QUANTILE = 0.95


class PlanError(ValueError):
    """The tables or the workload are inconsistent; the message names the entry."""


@dataclass(frozen=True)
class Accelerator:
    name: str
    memory_gib: float
    price_per_hour: float | None
    source: str


@dataclass(frozen=True)
class Pool:
    name: str
    accelerator: str
    devices_per_node: int
    max_utilisation: float


@dataclass(frozen=True)
class CostProfile:
    """Cost of one request of ``units`` on one server: ``fixed_ms + per_unit_ms * units``, with SCV ``scv``.

    ``streams_per_device`` concurrent requests run on one device (Triton instances, or the throughput gain of
    dynamic batching over batch 1); ``memory_gib`` is what the model holds on the device.
    """

    model: str
    accelerator: str
    per_unit_ms: float
    fixed_ms: float
    scv: float
    streams_per_device: float
    memory_gib: float
    source: str
    measured: bool = False

    def service(self, units: float) -> ServiceTime:
        return ServiceTime((self.fixed_ms + self.per_unit_ms * units) / 1000.0, self.scv)


@dataclass(frozen=True)
class Demand:
    workload: str
    model: str
    requests_per_s: float
    units_per_request: float
    slo_p95_ms: float
    arrival_scv: float = 1.0


@dataclass(frozen=True)
class CpuDemand:
    workload: str
    item: str
    cpu_cores: float  # CPU-seconds per second
    source: str


@dataclass(frozen=True)
class ModelResult:
    model: str
    workloads: tuple[str, ...]
    requests_per_s: float
    units_per_request: float
    service_ms: float
    p95_ms: float
    slo_p95_ms: float
    meets_slo: bool
    source: str


@dataclass(frozen=True)
class PoolResult:
    pool: str
    accelerator: str
    devices: int
    nodes: int
    servers: int
    utilisation: float
    limited_by: str
    models: tuple[ModelResult, ...]
    memory_gib: float
    memory_ok: bool
    cost_per_hour: float | None


@dataclass(frozen=True)
class CpuPoolResult:
    cores: float
    nodes: int
    cores_per_node: int
    max_utilisation: float
    items: tuple[CpuDemand, ...]


@dataclass(frozen=True)
class Plan:
    pools: tuple[PoolResult, ...]
    cpu: CpuPoolResult
    demands: tuple[Demand, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def cost_per_hour(self) -> float:
        return math.fsum(p.cost_per_hour or 0.0 for p in self.pools)


# -- tables ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tables:
    accelerators: dict[str, Accelerator]
    pools: dict[str, Pool]
    placement: dict[str, str]
    profiles: dict[tuple[str, str], CostProfile]
    units: dict[str, str]
    cpu_costs: dict[str, tuple[float, str]]
    cpu_cores_per_node: int
    cpu_max_utilisation: float


def _num(raw: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = raw.get(key, default)
    if value is None:
        raise PlanError(f"{where}: missing {key!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PlanError(f"{where}.{key}: not a number: {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise PlanError(f"{where}.{key}: must be a finite number >= 0, got {value!r}")
    return number


def load_tables(raw: Mapping[str, Any], measured: Mapping[str, Any] | None = None) -> Tables:
    """Validate the tables; ``measured`` (the load test's cpu_profile.json) adds or replaces CPU-class profiles."""
    accelerators = {
        name: Accelerator(
            name,
            _num(a, "memory_gib", f"accelerators.{name}"),
            None if a.get("price_per_hour") is None else _num(a, "price_per_hour", f"accelerators.{name}"),
            str(a.get("source", "")),
        )
        for name, a in (raw.get("accelerators") or {}).items()
    }
    pools: dict[str, Pool] = {}
    for name, p in (raw.get("pools") or {}).items():
        where = f"pools.{name}"
        accel = str(p.get("accelerator", ""))
        if accel not in accelerators:
            raise PlanError(f"{where}.accelerator: unknown accelerator {accel!r}; known: {sorted(accelerators)}")
        util = _num(p, "max_utilisation", where, 0.75)
        if not 0 < util <= 1:
            raise PlanError(f"{where}.max_utilisation: must be in (0, 1]")
        devices = int(_num(p, "devices_per_node", where, 1))
        if devices < 1:
            raise PlanError(f"{where}.devices_per_node: must be >= 1")
        pools[name] = Pool(name, accel, devices, util)
    placement = {str(k): str(v) for k, v in (raw.get("placement") or {}).items()}
    for model, pool in placement.items():
        if pool not in pools:
            raise PlanError(f"placement.{model}: unknown pool {pool!r}; known: {sorted(pools)}")
    profiles: dict[tuple[str, str], CostProfile] = {}
    units: dict[str, str] = {}
    models = dict(raw.get("models") or {})
    for model, m in (measured or {}).get("models", {}).items():
        merged = dict(models.get(model) or {"unit": m.get("unit", "request")})
        merged["profiles"] = {**(merged.get("profiles") or {}), **m.get("profiles", {})}
        models[model] = merged
    for model, m in models.items():
        units[model] = str(m.get("unit", "request"))
        for accel, prof in (m.get("profiles") or {}).items():
            where = f"models.{model}.profiles.{accel}"
            if accel not in accelerators:
                raise PlanError(f"{where}: unknown accelerator {accel!r}")
            streams = _num(prof, "streams_per_device", where, 1)
            if streams <= 0:
                raise PlanError(f"{where}.streams_per_device: must be > 0")
            profile = CostProfile(
                model,
                accel,
                _num(prof, "per_unit_ms", where, 0),
                _num(prof, "fixed_ms", where, 0),
                _num(prof, "scv", where, 0.5),
                streams,
                _num(prof, "memory_gib", where, 0),
                str(prof.get("source", "")),
                bool(prof.get("measured", False)),
            )
            if profile.per_unit_ms == 0 and profile.fixed_ms == 0:
                raise PlanError(f"{where}: per_unit_ms and fixed_ms are both 0")
            if not profile.source:
                raise PlanError(f"{where}: every profile must state its source")
            profiles[(model, accel)] = profile
    cpu_raw = dict(raw.get("cpu") or {})
    costs_raw: dict[str, Any] = {**(cpu_raw.get("costs") or {}), **((measured or {}).get("cpu_costs") or {})}
    cpu_costs = {
        name: (_num(c, "value", f"cpu.costs.{name}"), str(c.get("source", ""))) for name, c in costs_raw.items()
    }
    return Tables(
        accelerators,
        pools,
        placement,
        profiles,
        units,
        cpu_costs,
        int(_num(cpu_raw, "cores_per_node", "cpu", 8)),
        _num(cpu_raw, "max_utilisation", "cpu", 0.7),
    )


# -- workloads -> demand -------------------------------------------------------------------------------------------


def _slo(w: Mapping[str, Any], model: str, where: str) -> float:
    slos = w.get("slo_p95_ms") or {}
    if model not in slos:
        raise PlanError(f"{where}.slo_p95_ms: no SLO for {model!r}")
    return _num(slos, model, f"{where}.slo_p95_ms")


def _cpu(tables: Tables, name: str) -> tuple[float, str]:
    return tables.cpu_costs.get(name, (0.0, "not profiled"))


def conference_demand(name: str, w: Mapping[str, Any], tables: Tables) -> tuple[list[Demand], list[CpuDemand]]:
    """Floor holder's speech is cut into segments; each gets 1 ASR and (languages - 1) x (MT + TTS) calls."""
    where = f"workloads.{name}"
    count = _num(w, "count", where)
    languages = int(_num(w, "languages", where, 2))
    participants = _num(w, "participants", where, 2)
    if languages < 1:
        raise PlanError(f"{where}.languages: must be >= 1")
    speech = _num(w, "speech_fraction", where, 0.7)
    segment_s = _num(w, "segment_s", where, 4.0)
    if segment_s <= 0:
        raise PlanError(f"{where}.segment_s: must be > 0")
    tokens = _num(w, "tokens_per_speech_s", where, 3.3)
    segments_per_s = count * speech / segment_s
    targets = languages - 1
    demands = [Demand(name, "asr", segments_per_s, segment_s, _slo(w, "asr", where))]
    if targets:
        demands.append(Demand(name, "mt", segments_per_s * targets, tokens * segment_s, _slo(w, "mt", where)))
        demands.append(Demand(name, "tts", segments_per_s * targets, segment_s, _slo(w, "tts", where)))
    vad_ms, vad_src = _cpu(tables, "gateway_ms_per_speech_s")
    fan_ms, fan_src = _cpu(tables, "gateway_ms_per_listener_segment")
    cpu = [
        CpuDemand(name, "gateway: VAD + publish", count * speech * vad_ms / 1000, vad_src),
        CpuDemand(name, "gateway: fan-out", segments_per_s * max(0.0, participants - 1) * fan_ms / 1000, fan_src),
    ]
    return demands, cpu


def keyframes_demand(name: str, w: Mapping[str, Any], tables: Tables) -> tuple[list[Demand], list[CpuDemand]]:
    """A query scores ``scored_fraction`` of the candidate grid in requests of ``score_batch`` frames."""
    where = f"workloads.{name}"
    queries_per_s = _num(w, "per_minute", where) / 60.0
    candidates = _num(w, "video_minutes", where) * 60.0 * _num(w, "sampling_fps", where, 1.0)
    scored = max(1.0, candidates * _num(w, "scored_fraction", where, 0.05))
    batch = _num(w, "score_batch", where, 32)
    if batch < 1:
        raise PlanError(f"{where}.score_batch: must be >= 1")
    requests = math.ceil(scored / batch)
    demand = Demand(
        name, "frame_relevance", queries_per_s * requests, scored / requests, _slo(w, "frame_relevance", where)
    )
    decode_ms, src = _cpu(tables, "keyframes_decode_ms_per_scored_frame")
    probe_ms, probe_src = _cpu(tables, "keyframes_ms_per_query")
    cpu = [
        CpuDemand(name, "keyframes: decode", queries_per_s * scored * decode_ms / 1000, src),
        CpuDemand(name, "keyframes: per query", queries_per_s * probe_ms / 1000, probe_src),
    ]
    return [demand], cpu


def camera_demand(name: str, w: Mapping[str, Any], tables: Tables) -> tuple[list[Demand], list[CpuDemand]]:
    """Monitoring ingest: one object_detector request per camera frame."""
    where = f"workloads.{name}"
    rate = _num(w, "count", where) * _num(w, "fps", where)
    ingest_ms, src = _cpu(tables, "monitoring_ms_per_frame")
    scv = _num(w, "arrival_scv", where, 1.0)  # many unsynchronised cameras superpose to nearly Poisson
    return (
        [Demand(name, "detector", rate, 1.0, _slo(w, "detector", where), arrival_scv=scv)],
        [CpuDemand(name, "monitoring: ingest", rate * ingest_ms / 1000, src)],
    )


def triage_demand(name: str, w: Mapping[str, Any], tables: Tables) -> tuple[list[Demand], list[CpuDemand]]:
    """Triage ``Assess``: one ``triage_captioner`` request of all the assessment's photographs, then one
    ``triage_reasoner`` request of its findings text, unless the photographs are referred as not a fundus.

    ``per_s`` assessments per second, ``images_per_assessment`` photographs each (the service takes 1 to
    TESSERA_TRIAGE_MAX_IMAGES), ``out_of_distribution_fraction`` of them referred before the reasoner (default 0).
    The service's CPU: each photograph's decode and orientation, plus a per-assessment part.
    """
    where = f"workloads.{name}"
    rate = _num(w, "per_s", where)
    images = _num(w, "images_per_assessment", where, 1)
    if images < 1:
        raise PlanError(f"{where}.images_per_assessment: must be >= 1")
    ood = _num(w, "out_of_distribution_fraction", where, 0.0)
    if ood > 1:
        raise PlanError(f"{where}.out_of_distribution_fraction: must be in [0, 1]")
    demands = [
        Demand(name, "triage_captioner", rate, images, _slo(w, "triage_captioner", where)),
        Demand(name, "triage_reasoner", rate * (1 - ood), 1.0, _slo(w, "triage_reasoner", where)),
    ]
    decode_ms, decode_src = _cpu(tables, "triage_decode_ms_per_image")
    assess_ms, assess_src = _cpu(tables, "triage_ms_per_assessment")
    cpu = [
        CpuDemand(name, "triage: decode", rate * images * decode_ms / 1000, decode_src),
        CpuDemand(name, "triage: per assessment", rate * assess_ms / 1000, assess_src),
    ]
    return demands, cpu


def cry_demand(name: str, w: Mapping[str, Any], tables: Tables) -> tuple[list[Demand], list[CpuDemand]]:
    """Cry classification: ``microphones`` live streams (``StreamClassify``) plus ``clips_per_s`` clips of
    ``clip_s`` seconds (``Classify``); ``sound_fraction`` of the audio is sound events (segments, default 0.3), each
    ``segment_s`` long (default 3): one ``cry_classifier`` request of ``segment_s`` audio seconds per segment.
    The service's CPU: decode, resampling and segmentation of every second of audio."""
    where = f"workloads.{name}"
    audio_s_per_s = _num(w, "microphones", where, 0.0) + _num(w, "clips_per_s", where, 0.0) * _num(
        w, "clip_s", where, 10.0
    )
    if audio_s_per_s <= 0:
        raise PlanError(f"{where}: needs microphones or clips_per_s")
    sound = _num(w, "sound_fraction", where, 0.3)
    segment_s = _num(w, "segment_s", where, 3.0)
    if not 0 <= sound <= 1 or segment_s <= 0:
        raise PlanError(f"{where}: sound_fraction must be in [0, 1] and segment_s > 0")
    rate = audio_s_per_s * sound / segment_s
    audio_ms, src = _cpu(tables, "cry_ms_per_audio_s")
    return (
        [Demand(name, "cry_classifier", rate, segment_s, _slo(w, "cry_classifier", where))],
        [CpuDemand(name, "cry: decode and segment", audio_s_per_s * audio_ms / 1000, src)],
    )


_DEMANDS: dict[str, Callable[[str, Mapping[str, Any], Tables], tuple[list[Demand], list[CpuDemand]]]] = {
    "conference": conference_demand,
    "keyframes": keyframes_demand,
    "camera": camera_demand,
    "triage": triage_demand,
    "cry": cry_demand,
}


def demands_of(workload: Mapping[str, Any], tables: Tables) -> tuple[list[Demand], list[CpuDemand]]:
    demands: list[Demand] = []
    cpu: list[CpuDemand] = []
    for name, w in (workload.get("workloads") or {}).items():
        kind = str(w.get("kind", ""))
        if kind not in _DEMANDS:
            raise PlanError(f"workloads.{name}.kind: unknown kind {kind!r}; known: {sorted(_DEMANDS)}")
        d, c = _DEMANDS[kind](str(name), w, tables)
        demands += [x for x in d if x.requests_per_s > 0]
        cpu += c
    return demands, cpu


# -- sizing --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Class:
    model: str
    rate: float
    service: ServiceTime
    demand: list[Demand]
    profile: CostProfile


def _pool_classes(pool: Pool, demands: list[Demand], tables: Tables) -> list[_Class]:
    by_model: dict[str, list[Demand]] = {}
    for d in demands:
        by_model.setdefault(d.model, []).append(d)
    classes = []
    for model, ds in by_model.items():
        profile = tables.profiles.get((model, pool.accelerator))
        if profile is None:
            raise PlanError(f"no cost profile for model {model!r} on {pool.accelerator!r} (pool {pool.name})")
        rate = math.fsum(d.requests_per_s for d in ds)
        units = math.fsum(d.requests_per_s * d.units_per_request for d in ds) / rate
        classes.append(_Class(model, rate, profile.service(units), ds, profile))
    return classes


def pool_estimate(classes: list[_Class], servers: int) -> tuple[StationEstimate, list[float]]:
    """The pool's station and each class's p95 (seconds) with ``servers`` servers."""
    rate = math.fsum(c.rate for c in classes)
    scv = _merged_arrival_scv(classes)
    est = station(rate, servers, mixture([(c.rate, c.service) for c in classes]), scv)
    return est, [est.sojourn_quantile(QUANTILE, c.service) for c in classes]


def _merged_arrival_scv(classes: list[_Class]) -> float:
    """Superposed streams: rate-weighted SCV (Whitt's asymptotic method), Poisson when unsure."""
    demands = [d for c in classes for d in c.demand]
    return math.fsum(d.requests_per_s * d.arrival_scv for d in demands) / math.fsum(d.requests_per_s for d in demands)


def size_pool(pool: Pool, demands: list[Demand], tables: Tables, max_devices: int = 1_000_000) -> PoolResult:
    classes = _pool_classes(pool, demands, tables)
    streams = min(c.profile.streams_per_device for c in classes)  # the pool's devices serve every model
    slos = [min(d.slo_p95_ms for d in c.demand) / 1000 for c in classes]
    offered = math.fsum(c.rate * c.service.mean_s for c in classes)
    devices = max(1, math.ceil(offered / (pool.max_utilisation * streams) - 1e-9))
    hopeless = [c.model for c, slo in zip(classes, slos, strict=True) if c.service.quantile(QUANTILE) > slo]
    limited = "utilisation"
    while True:
        servers = max(1, math.floor(devices * streams))
        est, p95s = pool_estimate(classes, servers)
        ok = [p <= slo for p, slo in zip(p95s, slos, strict=True)]
        if all(ok) or (est.stable and all(ok[i] for i, c in enumerate(classes) if c.model not in hopeless)):
            break
        limited = "latency"
        devices += 1
        if devices > max_devices:
            raise PlanError(f"pool {pool.name}: no size up to {max_devices} devices meets the SLOs")
    if hopeless:
        limited = f"service time alone exceeds the SLO of {', '.join(hopeless)}"
    accel = tables.accelerators[pool.accelerator]
    memory = math.fsum(c.profile.memory_gib for c in classes)
    nodes = math.ceil(devices / pool.devices_per_node)
    models = tuple(
        ModelResult(
            c.model,
            tuple(sorted({d.workload for d in c.demand})),
            c.rate,
            math.fsum(d.requests_per_s * d.units_per_request for d in c.demand) / c.rate,
            c.service.mean_s * 1000,
            p95 * 1000,
            slo * 1000,
            p95 <= slo,
            c.profile.source,
        )
        for c, p95, slo in zip(classes, p95s, slos, strict=True)
    )
    return PoolResult(
        pool.name,
        pool.accelerator,
        devices,
        nodes,
        servers,
        est.utilisation,
        limited,
        models,
        memory,
        accel.memory_gib == 0 or memory <= accel.memory_gib,
        None if accel.price_per_hour is None else nodes * pool.devices_per_node * accel.price_per_hour,
    )


def plan(workload: Mapping[str, Any], tables: Tables, placement: Mapping[str, str] | None = None) -> Plan:
    """Node counts, utilisation and p95 per pool for the workload mix; ``placement`` overrides model -> pool."""
    where = {**tables.placement, **(placement or {})}
    for model, pool in where.items():
        if pool not in tables.pools:
            raise PlanError(f"placement {model}={pool}: unknown pool; known: {sorted(tables.pools)}")
    demands, cpu = demands_of(workload, tables)
    notes: list[str] = []
    by_pool: dict[str, list[Demand]] = {}
    for d in demands:
        if d.model not in where:
            raise PlanError(f"model {d.model!r} has no pool; add it to placement")
        by_pool.setdefault(where[d.model], []).append(d)
    pools = tuple(size_pool(tables.pools[name], ds, tables) for name, ds in sorted(by_pool.items()))
    for p in pools:
        if not p.memory_ok:
            notes.append(
                f"pool {p.pool}: its models need {p.memory_gib:g} GiB, more than one "
                f"{p.accelerator} holds ({tables.accelerators[p.accelerator].memory_gib:g} GiB)"
            )
        if p.cost_per_hour is None:
            notes.append(f"pool {p.pool}: no price for {p.accelerator}; not costed")
    for item in cpu:
        if item.source == "not profiled":
            notes.append(f"CPU cost of {item.item!r} ({item.workload}) is not profiled: counted as 0")
    cores = math.fsum(c.cpu_cores for c in cpu)
    cpu_nodes = math.ceil(cores / (tables.cpu_cores_per_node * tables.cpu_max_utilisation) - 1e-9) if cores else 0
    cpu_pool = CpuPoolResult(cores, cpu_nodes, tables.cpu_cores_per_node, tables.cpu_max_utilisation, tuple(cpu))
    return Plan(pools, cpu_pool, tuple(demands), tuple(notes))


def scaled_workload(workload: Mapping[str, Any], factor: float) -> dict[str, Any]:
    """The same mix with every volume (counts, query, assessment and clip rates, microphones) multiplied by
    ``factor``."""
    out: dict[str, Any] = {"workloads": {}}
    for name, w in (workload.get("workloads") or {}).items():
        scaled = dict(w)
        for key in ("count", "per_minute", "per_s", "microphones", "clips_per_s"):
            if key in scaled:
                scaled[key] = float(scaled[key]) * factor
        out["workloads"][name] = scaled
    return out


def latency_curve(
    pool: PoolResult, demands: list[Demand], tables: Tables, factors: list[float]
) -> dict[str, list[float]]:
    """p95 (ms) of each model of a sized pool as its load is scaled by each factor (inf once unstable)."""
    pool_def = tables.pools[pool.pool]
    classes = _pool_classes(pool_def, [d for d in demands if d.model in {m.model for m in pool.models}], tables)
    curves: dict[str, list[float]] = {c.model: [] for c in classes}
    for factor in factors:
        scaled = [
            _Class(c.model, c.rate * factor, c.service, c.demand, c.profile) for c in classes if c.rate * factor > 0
        ]
        if not scaled:
            for c in classes:
                curves[c.model].append(c.service.quantile(QUANTILE) * 1000)
            continue
        _, p95s = pool_estimate(scaled, pool.servers)
        for c, p in zip(scaled, p95s, strict=True):
            curves[c.model].append(p * 1000)
    return curves
