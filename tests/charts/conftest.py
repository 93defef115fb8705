"""Fixtures for the chart tests: the chart staged offline, every case rendered once."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chartlib
from manifests import Render, load_values


@pytest.fixture(scope="session")
def staged_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chartlib.ensure_tools()
    return Path(chartlib.stage_chart(tmp_path_factory.mktemp("chart")))


@pytest.fixture(scope="session")
def renders(staged_chart: Path) -> dict[str, Render]:
    return {
        case: Render(case, chartlib.load_docs(chartlib.render_case(staged_chart, case)), load_values(files))
        for case, files in chartlib.CASES.items()
    }


@pytest.fixture(scope="session")
def helm_render(staged_chart: Path) -> Callable[..., Any]:
    """helm template with extra --set values; returns the CompletedProcess."""

    def run(sets: dict[str, str] | None = None, values: list[Path] | None = None) -> Any:
        return chartlib.render(staged_chart, values or [], sets)

    return run
