"""Load scenarios, one module per service. Adding one is a small step (loadtest/README.md, "Adding a scenario"):

1. write ``loadtest/scenarios/<name>.py`` with a class that has ``name``, ``async setup()``,
   ``async once(scheduled_s)`` (one unit of load, due at ``scheduled_s``; raise to count an error, return a
   detail object for the report), ``extras() -> dict`` and ``async close()``;
2. end it with ``SCENARIO = <the class>`` (its ``create(target, options)`` is the factory): it is then discovered,
   as every Triton model is as a model station;
3. give it a section in ``loadtest/profiles/*.yaml`` (closed-loop concurrencies, open-loop load fractions,
   durations and caps) and, if it needs a service, name the service in the profile's ``services``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from loadtest.stack import Target


class Scenario(Protocol):
    name: str

    async def setup(self) -> None: ...

    async def once(self, scheduled_s: float) -> Any: ...

    def extras(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


ScenarioFactory = Callable[[Target, dict[str, Any]], Awaitable[Scenario]]


def capability_scenarios() -> list[str]:
    """The service scenarios there are: every module here but ``model`` (each ends with ``SCENARIO = <class>``)."""
    import loadtest.scenarios as package

    return sorted(info.name for info in pkgutil.iter_modules(package.__path__) if info.name != "model")


def model_stations() -> list[str]:
    """Every Triton model of every capability can be loaded alone, straight through tritonclient (a planner
    station)."""
    from tessera.runtime.model_repository import discover

    return sorted(discover())


def known() -> list[str]:
    return [*capability_scenarios(), *model_stations()]


def factory(name: str) -> ScenarioFactory | None:
    """The scenario called ``name``: a service scenario module, else a model station; None when there is neither."""
    if name in capability_scenarios():
        scenario = importlib.import_module(f"loadtest.scenarios.{name}").SCENARIO
        create: ScenarioFactory = scenario.create
        return create
    if name in model_stations():
        from loadtest.scenarios.model import ModelScenario

        return lambda target, options: ModelScenario.create(target, options, name)
    return None
