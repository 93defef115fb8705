"""p50/p99 round trip of a trivial Triton model through tessera.runtime.inference versus tritonclient directly.

Both clients talk to the same real tritonserver in the same run, interleaved call by call so drift in machine load
hits both equally. Writes benchmarks/results/inference_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput, InferRequestedOutput

from tessera.runtime import model_repository
from tessera.runtime.inference import TritonClient
from tessera.runtime.processes import start_triton

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


async def measure(url: str, calls: int, warmup: int) -> dict[str, dict[str, float]]:
    a = np.arange(16, dtype=np.float32)
    b = np.ones(16, dtype=np.float32)
    ours = TritonClient(url)
    raw = triton_aio.InferenceServerClient(url)

    async def direct() -> None:
        inputs = [InferInput("INPUT0", [16], "FP32"), InferInput("INPUT1", [16], "FP32")]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(b)
        result = await raw.infer("add_sub", inputs, outputs=[InferRequestedOutput("SUM"), InferRequestedOutput("DIFF")])
        result.as_numpy("SUM")

    async def runtime() -> None:
        await ours.infer("add_sub", {"INPUT0": a, "INPUT1": b})

    timings: dict[str, list[float]] = {"direct": [], "runtime": []}
    for i in range(warmup + calls):
        for name, call in (
            (("direct", direct), ("runtime", runtime)) if i % 2 else (("runtime", runtime), ("direct", direct))
        ):
            began = time.perf_counter()
            await call()
            if i >= warmup:
                timings[name].append((time.perf_counter() - began) * 1000)
    await ours.close()
    await raw.close()
    return {
        name: {"p50_ms": _pct(v, 50), "p90_ms": _pct(v, 90), "p99_ms": _pct(v, 99), "mean_ms": statistics.fmean(v)}
        for name, v in timings.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_repository.build(work / "repo", services_root=ROOT / "tests" / "fixtures", only=["add_sub"])
        server = start_triton(work / "repo", work, work / "triton.log")
        try:
            stats = asyncio.run(measure(server.grpc_url, args.calls, args.warmup))
        finally:
            server.stop()
    result = {
        "model": "add_sub (python backend, 16 x FP32)",
        "calls": args.calls,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        **stats,
        "ratio_p50": stats["runtime"]["p50_ms"] / stats["direct"]["p50_ms"],
        "overhead_p50_ms": stats["runtime"]["p50_ms"] - stats["direct"]["p50_ms"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "inference_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(
        f"| {name} | {s['p50_ms']:.3f} | {s['p90_ms']:.3f} | {s['p99_ms']:.3f} |" for name, s in stats.items()
    )
    (RESULTS / "inference_overhead.md").write_text(
        "# Triton round trip: tessera.runtime.inference vs tritonclient\n\n"
        f"{args.calls} interleaved calls each, `{result['model']}`.\n\n"
        "| client | p50 ms | p90 ms | p99 ms |\n|---|---|---|---|\n"
        f"{rows}\n\nratio p50 (runtime / direct): **{result['ratio_p50']:.3f}**, "
        f"overhead p50: {result['overhead_p50_ms']:.3f} ms\n\nRegenerate: `make bench-inference`\n"
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
