"""Load scenarios, one module per service. Adding one is a small step (loadtest/README.md, "Adding a scenario"):

1. write ``loadtest/scenarios/<name>.py`` with a class that has ``name``, ``async setup()``,
   ``async once(scheduled_s)`` (one unit of load, due at ``scheduled_s``; raise to count an error, return a
   detail object for the report), ``extras() -> dict`` and ``async close()``;
2. register its factory in ``SCENARIOS`` below;
3. give it a section in ``loadtest/profiles/*.yaml`` (closed-loop concurrencies, open-loop load fractions,
   durations and caps) and, if it needs a service, name the service in the profile's ``services``.
"""

from __future__ import annotations

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


def _keyframes(target: Target, options: dict[str, Any]) -> Awaitable[Scenario]:
    from loadtest.scenarios.keyframes import KeyframesScenario

    return KeyframesScenario.create(target, options)


def _frame_relevance(target: Target, options: dict[str, Any]) -> Awaitable[Scenario]:
    from loadtest.scenarios.model import ModelScenario

    return ModelScenario.create(target, options, "frame_relevance")


def _object_detector(target: Target, options: dict[str, Any]) -> Awaitable[Scenario]:
    from loadtest.scenarios.model import ModelScenario

    return ModelScenario.create(target, options, "object_detector")


def _translation(target: Target, options: dict[str, Any]) -> Awaitable[Scenario]:
    from loadtest.scenarios.translation import ConferenceScenario

    return ConferenceScenario.create(target, options)


def _monitoring(target: Target, options: dict[str, Any]) -> Awaitable[Scenario]:
    from loadtest.scenarios.monitoring import MonitoringScenario

    return MonitoringScenario.create(target, options)


def _audio_events(target: Target, options: dict[str, Any]) -> Awaitable[Scenario]:
    from loadtest.scenarios.model import ModelScenario

    return ModelScenario.create(target, options, "audio_events")


SCENARIOS: dict[str, ScenarioFactory] = {
    "keyframes": _keyframes,
    "frame_relevance": _frame_relevance,  # the model alone, straight through tritonclient (planner validation)
    "object_detector": _object_detector,  # monitoring's models alone (planner validation)
    "audio_events": _audio_events,
    "translation": _translation,
    "monitoring": _monitoring,
}
