"""The coordinator: Flower ServerApp. Each round samples families, runs SecAgg+ over their adapter deltas (Flower's
``SecAggPlusWorkflow``: the server only ever unmasks the sum), then hands the mean delta to the ``Coordinator``,
which checks, validates, calibrates and publishes it.

SecAgg+ exists in Flower 1.42 only as a legacy-compat workflow, so the round logic is a legacy ``FedAvg`` subclass
(``AdapterRounds``) driven by ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))``.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field

from flwr.app import Context
from flwr.common import FitIns, FitRes, Parameters, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat import LegacyContext
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid, ServerApp

from tessera.cry.fl import wire
from tessera.cry.fl.coordinator import Coordinator, RoundOutcome
from tessera.cry.fl.settings import FederationSettings

log = logging.getLogger("tessera.cry.fl")


class AdapterRounds(FedAvg):
    """Sends the global adapters with the round's local-training settings; takes back the secure mean delta."""

    def __init__(self, coordinator: Coordinator) -> None:
        s = coordinator.settings
        super().__init__(
            fraction_fit=s.fraction_fit,
            fraction_evaluate=0.0,
            min_fit_clients=s.min_fit_clients,
            min_evaluate_clients=0,
            min_available_clients=min(s.families, max(s.min_fit_clients, math.ceil(s.fraction_fit * s.families))),
            initial_parameters=ndarrays_to_parameters(coordinator.global_list()),
            accept_failures=True,
        )
        self.coordinator = coordinator
        self.current_round = 0
        self.sampled = 0

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        self.current_round = server_round
        chosen = super().configure_fit(server_round, parameters, client_manager)
        self.sampled = len(chosen)
        s = self.coordinator.settings
        dropping = set(
            random.Random(s.seed * 7919 + server_round).sample(
                range(len(chosen)), round(s.inject_dropout * len(chosen))
            )
        )
        out = []
        for i, (proxy, fit_ins) in enumerate(chosen):
            config: dict[str, Scalar] = {"round": server_round}
            if i in dropping:
                config["drop"] = True
            out.append((proxy, FitIns(fit_ins.parameters, config)))
        return out

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not results:
            self.coordinator.history.append(RoundOutcome(server_round, False, "no client finished the round"))
            return None, {}
        # Under SecAgg+ every FitRes holds the same unmasked mean: no single client's delta reaches this point.
        mean_delta = parameters_to_ndarrays(results[0][1].parameters)
        # Flower 1.42's SecAgg+ workflow lists each failure twice: count the sampled clients that sent nothing.
        outcome = self.coordinator.apply(server_round, mean_delta, len(results), self.sampled - len(results))
        if not outcome.accepted:
            return None, {"accepted": False}
        return ndarrays_to_parameters(self.coordinator.global_list()), {"accepted": True, **outcome.figures}


@dataclass
class FederationRun:
    """What a run leaves behind: the coordinator (model, history) and the bytes on the wire."""

    coordinator: Coordinator | None = None
    wire: wire.WireLog = field(default_factory=wire.WireLog)


def secagg_workflow(settings: FederationSettings) -> SecAggPlusWorkflow:
    return SecAggPlusWorkflow(
        num_shares=1.0,  # every sampled client shares keys with all the others
        reconstruction_threshold=settings.reconstruction_threshold,
        max_weight=settings.max_weight,
        clipping_range=settings.clipping_range,
        quantization_range=settings.quantization_range,
        modulus_range=settings.modulus_range,
        timeout=settings.stage_timeout_s,
    )


def make_server_app(settings: FederationSettings | None = None, run: FederationRun | None = None) -> ServerApp:
    """A ServerApp; ``settings`` default to the run config (``flwr run --run-config``) over TESSERA_CRY_FL_*."""
    app = ServerApp()
    record = run if run is not None else FederationRun()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        chosen = settings or FederationSettings.from_run_config(dict(context.run_config))
        coordinator = Coordinator(chosen)
        record.coordinator = coordinator
        strategy = AdapterRounds(coordinator)
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=chosen.rounds), strategy=strategy)
        shapes = [(1,), *coordinator.shapes()]
        expected_bytes = sum(5 + 4 * len(s) + 8 * math.prod(s) for s in shapes) + 4096
        wired = wire.WireGrid(
            grid, chosen.modulus_range, shapes, 2 * expected_bytes, record.wire, lambda: strategy.current_round
        )
        log.info(
            "federation: %d rounds over %d families, SecAgg+ in Z_%d",
            chosen.rounds,
            chosen.families,
            chosen.modulus_range,
        )
        DefaultWorkflow(fit_workflow=secagg_workflow(chosen))(wired, legacy)

    return app


app = make_server_app()
