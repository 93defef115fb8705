"""``python -m tessera.cry.fl.simulation``: a federation of simulated families in this one process (make run,
tests, the benchmark). The chart runs the same ServerApp and ClientApp on Flower's deployment engine instead.

Flower 1.42 simulates only on Ray (``flwr[simulation]``: a 20 s cold start, a process per worker). Here the
ClientApps run in the simulation engine's own worker threads: a small backend registered under the module path the
engine imports its Ray backend from (``flwr.server.superlink.fleet.vce.backend.raybackend``). That path is private,
so flwr is pinned exactly and ``tests/integration/cry`` fails loudly when an upgrade moves it.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
import types
from collections.abc import Mapping, Sequence
from typing import Any

from flwr.app import Context, Message

from tessera.cry.fl.client_app import Behaviour, make_client_app
from tessera.cry.fl.server_app import FederationRun, make_server_app
from tessera.cry.fl.settings import FederationSettings
from tessera.runtime import config

RAY_BACKEND_MODULE = "flwr.server.superlink.fleet.vce.backend.raybackend"


def install_thread_backend(workers: int) -> None:
    from flwr.server.superlink.fleet.vce.backend.backend import Backend

    class ThreadBackend(Backend):
        def __init__(self, backend_config: Mapping[str, Any]) -> None:
            self.app_fn: Any = None

        def build(self, app_fn: Any) -> None:
            self.app_fn = app_fn

        @property
        def num_workers(self) -> int:
            return workers

        def is_worker_idle(self) -> bool:
            return True

        def terminate(self) -> None:
            pass

        def process_message(self, message: Message, context: Context) -> tuple[Message, Context]:
            # Ray would pickle both; without copies SecAgg+'s shared setup record is consumed by the first client.
            message, context = copy.deepcopy(message), copy.deepcopy(context)
            return self.app_fn()(message=message, context=context), context

    module = types.ModuleType(RAY_BACKEND_MODULE)
    module.RayBackend = ThreadBackend  # type: ignore[attr-defined]
    sys.modules[RAY_BACKEND_MODULE] = module


def run(
    settings: FederationSettings, behaviours: Mapping[int, Behaviour] | None = None, workers: int = 2
) -> FederationRun:
    """Runs ``settings.rounds`` rounds over ``settings.families`` simulated devices; returns what they left."""
    from flwr.simulation import run_simulation

    install_thread_backend(workers)
    record = FederationRun()
    run_simulation(
        server_app=make_server_app(settings, record),
        client_app=make_client_app(settings, behaviours),
        num_supernodes=settings.families,
        backend_name="thread",  # anything but "ray" skips the engine's check that Ray is installed
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    if record.coordinator is None:
        raise RuntimeError("the federation did not start (see Flower's log above)")
    return record


def report(record: FederationRun, seconds: float) -> dict[str, Any]:
    assert record.coordinator is not None
    return {
        "seconds": round(seconds, 1),
        "rounds": [
            {k: v for k, v in o.__dict__.items() if k != "figures"} | {"val_macro_f1": o.figures.get("macro_f1")}
            for o in record.coordinator.history
        ],
        "upload_bytes_per_client": {r: record.wire.per_client(r) for r in sorted(record.wire.sent)},
        "rejected_uploads": record.wire.rejected,
        "final_validation": record.coordinator.figures,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--families", type=int)
    parser.add_argument("--dropout", type=float, help="fraction of each round's sampled families that drop out")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = {"rounds": args.rounds, "families": args.families, "inject_dropout": args.dropout}
    settings = config.load(FederationSettings, **{k: v for k, v in overrides.items() if v is not None})
    began = time.perf_counter()
    record = run(settings, workers=args.workers)
    print(json.dumps(report(record, time.perf_counter() - began), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
