"""`tessera plan` as a user runs it: table on stdout, JSON/Markdown/PNG written, bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tessera.cli import app

ROOT = Path(__file__).resolve().parents[3]
TABLES = ROOT / "loadtest" / "tables"


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "plan",
        "--workload",
        str(TABLES / "workload.yaml"),
        "--tables",
        str(TABLES / "models.yaml"),
        "--measured",
        str(tmp_path / "none.json"),
        "--out",
        str(tmp_path / "plan"),
        *extra,
    ]


def test_plan_prints_a_table_and_writes_reports(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, _args(tmp_path))
    assert result.exit_code == 0, result.output
    assert "| a10 | a10 |" in result.output and "GPU cost" in result.output
    data = json.loads((tmp_path / "plan.json").read_text())
    assert {p["pool"] for p in data["pools"]} == {"a10", "t4", "rtx4060"}
    assert "## Cost profiles used" in (tmp_path / "plan.md").read_text()
    pytest.importorskip("matplotlib")
    assert (tmp_path / "plan.png").read_bytes()[:4] == b"\x89PNG"


def test_plan_json_and_placement_override(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, _args(tmp_path, "--json", "--place", "asr=a100"))
    assert result.exit_code == 0, result.output
    pools = {p["pool"]: p for p in json.loads(result.output)["pools"]}
    assert [m["model"] for m in pools["a100"]["models"]] == ["asr"]


@pytest.mark.parametrize(("extra", "message"), [(["--place", "asr"], "MODEL=POOL"), (["--place", "asr=tpu"], "tpu")])
def test_plan_refuses_bad_input(tmp_path: Path, extra: list[str], message: str) -> None:
    result = CliRunner().invoke(app, _args(tmp_path, *extra))
    assert result.exit_code == 2 and message in result.output
