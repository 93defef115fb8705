"""What a Python gRPC hop in front of Triton costs on this machine, before any service logic.

The same ``frame_relevance`` inference (one real thumbnail of the load-test video and a query) four ways,
interleaved call by call at concurrency 1 against one real tritonserver:

- ``direct``: the client calls Triton with ``tritonclient.grpc.aio``;
- ``aio_proxy``: the client calls a bare ``grpc.aio`` server (no interceptors, no validation) whose handler makes
  that call with ``tritonclient.grpc.aio``: the floor of any asyncio gRPC service in front of Triton;
- ``sync_proxy``: the same with a thread-pool ``grpc.server`` and the blocking ``tritonclient.grpc``;
- ``service``: the keyframes service, ``SelectKeyframes(STRATEGY_UNIFORM, k=1)`` on the cached video (exactly one
  such inference, plus validation, caches, tracing, metrics and the selection).

So ``service - direct`` (the load test's overhead figure) splits into the hop a Python asyncio server costs at
all (``aio_proxy - direct``) and what the service adds on top (``service - aio_proxy``).

    python benchmarks/runtime/proxy_floor.py [--calls 1000]    # writes benchmarks/results/proxy_floor.{json,md}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import InferInput, InferRequestedOutput

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
QUERY = b"a person"


def _inputs(frames: np.ndarray) -> list[InferInput]:
    tensor = InferInput("FRAMES", list(frames.shape), "UINT8")
    tensor.set_data_from_numpy(frames)
    query = InferInput("QUERY", [len(frames), 1], "BYTES")
    query.set_data_from_numpy(np.array([[QUERY]] * len(frames), dtype=np.object_))
    return [tensor, query]


# -- the two bare proxies (run as their own processes) -----------------------------------------------------------


def serve_sync(triton: str, frames: np.ndarray, port: int) -> None:
    import tritonclient.grpc as triton_sync

    client = triton_sync.InferenceServerClient(triton)

    class Proxy(health_pb2_grpc.HealthServicer):
        def Check(self, request: Any, context: Any) -> health_pb2.HealthCheckResponse:
            client.infer("frame_relevance", _inputs(frames), outputs=[InferRequestedOutput("SCORES")])
            return health_pb2.HealthCheckResponse()

    server = grpc.server(futures.ThreadPoolExecutor(4))
    health_pb2_grpc.add_HealthServicer_to_server(Proxy(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


async def serve_aio(triton: str, frames: np.ndarray, port: int) -> None:
    import tritonclient.grpc.aio as triton_aio

    client = triton_aio.InferenceServerClient(triton)

    class Proxy(health_pb2_grpc.HealthServicer):
        async def Check(self, request: Any, context: Any) -> health_pb2.HealthCheckResponse:  # type: ignore[override]
            await client.infer("frame_relevance", _inputs(frames), outputs=[InferRequestedOutput("SCORES")])
            return health_pb2.HealthCheckResponse()

    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(Proxy(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


# -- the measurement ---------------------------------------------------------------------------------------------


def _dist(values: list[float]) -> dict[str, float]:
    arr = np.array(values)
    return {q: float(np.percentile(arr, p)) for q, p in (("p50", 50), ("p90", 90), ("p99", 99))}


async def measure(calls: int, warmup: int) -> dict[str, Any]:
    import tritonclient.grpc.aio as triton_aio
    from loadtest.scenarios.keyframes import MEDIA_DIR, OverheadProbe, scenario_video

    from loadtest import stack
    from tessera.runtime.processes import ManagedProcess, free_port, health_status

    video = scenario_video(1)
    build = ROOT / "build" / "bench-proxy"
    target = stack.start(build / "stack", ["keyframes"], [ROOT / "build" / "media", MEDIA_DIR])
    proxies: list[ManagedProcess] = []
    try:
        probe = OverheadProbe(target, video, QUERY.decode())
        await probe.setup()
        assert probe.frames is not None
        np.save(build / "frames.npy", probe.frames)
        stubs = {}
        for kind in ("aio", "sync"):
            port = free_port()
            argv = [sys.executable, __file__, "--serve", kind, "--port", str(port), "--triton", target.triton_grpc]
            proc = ManagedProcess(f"{kind}-proxy", argv, build / f"{kind}-proxy.log")
            proc.start()
            proxies.append(proc)
            proc.wait_until(lambda p=port: health_status(f"127.0.0.1:{p}", "") != "UNREACHABLE", 30, "serving")
            stubs[kind] = health_pb2_grpc.HealthStub(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
        triton = triton_aio.InferenceServerClient(target.triton_grpc)

        async def direct() -> None:
            assert probe.frames is not None
            await triton.infer("frame_relevance", _inputs(probe.frames), outputs=[InferRequestedOutput("SCORES")])

        async def via(kind: str) -> None:
            await stubs[kind].Check(health_pb2.HealthCheckRequest())

        kinds = {
            "direct": direct,
            "aio_proxy": lambda: via("aio"),
            "sync_proxy": lambda: via("sync"),
            "service": probe.service,
        }
        timings: dict[str, list[float]] = {k: [] for k in kinds}
        names = list(kinds)
        for i in range(warmup + calls):
            for name in names if i % 2 else names[::-1]:
                began = time.perf_counter()
                await kinds[name]()
                if i >= warmup:
                    timings[name].append((time.perf_counter() - began) * 1000)
        await triton.close()
        await probe.close()
    finally:
        for proc in proxies:
            proc.stop()
        target.stop()
    dist = {k: _dist(v) for k, v in timings.items()}
    base = dist["direct"]["p50"]
    return {
        "calls": calls,
        "latency_ms": dist,
        "added_p50_ms": {k: d["p50"] - base for k, d in dist.items() if k != "direct"},
        "service_over_aio_proxy_p50_ms": dist["service"]["p50"] - dist["aio_proxy"]["p50"],
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# gRPC hop floor in front of Triton",
        "",
        "\n\n".join((__doc__ or "").split("\n\n")[1:4]),
        "",
        f"{result['calls']} interleaved calls each, concurrency 1, `python benchmarks/runtime/proxy_floor.py`.",
        "",
        "| path | p50 ms | p90 ms | p99 ms | added p50 over direct, ms |",
        "|---|---|---|---|---|",
    ]
    for name, d in result["latency_ms"].items():
        added = result["added_p50_ms"].get(name)
        lines.append(
            f"| {name} | {d['p50']:.2f} | {d['p90']:.2f} | {d['p99']:.2f} | "
            f"{'-' if added is None else f'{added:+.2f}'} |"
        )
    lines += [
        "",
        f"The keyframes service adds {result['service_over_aio_proxy_p50_ms']:+.2f} ms p50 over a bare asyncio "
        "proxy making the same call.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--serve", choices=["aio", "sync"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--triton", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        frames = np.load(ROOT / "build" / "bench-proxy" / "frames.npy")
        if args.serve == "sync":
            serve_sync(args.triton, frames, args.port)
        else:
            asyncio.run(serve_aio(args.triton, frames, args.port))
        return
    result = asyncio.run(measure(args.calls, args.warmup))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "proxy_floor.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "proxy_floor.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # the loadtest package sits at the repository root
    main()
