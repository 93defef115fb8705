"""`tessera up/status/call/down` as a user runs them: real processes, supervised restarts, clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tessera.runtime.processes import health_status
from tessera.runtime.stack import StackState

TESSERA = [sys.executable, "-m", "tessera.cli"]


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TESSERA, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_up_call_restart_down(tmp_path: Path, short_video: Path) -> None:
    env = {
        **os.environ,
        "TESSERA_STACK_BUILD_DIR": str(tmp_path / "build"),
        "TESSERA_STACK_BASE_PORT": "0",
        "TESSERA_STACK_NATS_PORT": "0",
        "TESSERA_STACK_TRITON_GRPC_PORT": "0",
        "TESSERA_STACK_TRITON_HTTP_PORT": "0",
        "TESSERA_STACK_TRITON_METRICS_PORT": "0",
        "TESSERA_STACK_MEDIA_ROOTS": str(short_video.parent),
    }
    up = _run(["up", "--detach"], env, timeout=400)
    assert up.returncode == 0, up.stderr[-2000:]
    state = StackState.load(tmp_path / "build" / "stack" / "state.json")
    assert state is not None and "keyframes" in state.services
    try:
        status = _run(["status"], env)
        assert status.returncode == 0 and json.loads(status.stdout)["services"]["keyframes"] == "SERVING"

        body = json.dumps({"video": {"uri": str(short_video)}, "query": "a cup", "k": 4, "strategy": "STRATEGY_FOCUS"})
        call = _run(["call", "KeyframeService/SelectKeyframes", body], env)
        assert call.returncode == 0, call.stdout + call.stderr
        assert len(json.loads(call.stdout)["frames"]) == 4

        bad = _run(["call", "KeyframeService/SelectKeyframes", json.dumps({"query": "x", "k": 1})], env)
        assert bad.returncode == 1 and json.loads(bad.stdout)["fields"].keys() == {"video"}

        # Kill the service process: the supervisor restarts it and it serves again.
        address = state.services["keyframes"]
        pid = _service_pid(tmp_path / "build" / "stack" / "logs" / "keyframes.log", address)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 120
        seen_down = False
        while time.monotonic() < deadline:
            current = health_status(address)
            seen_down = seen_down or current != "SERVING"
            if seen_down and current == "SERVING":
                break
            time.sleep(0.1)
        assert seen_down and health_status(address) == "SERVING"
    finally:
        down = _run(["down"], env)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not (tmp_path / "build" / "stack" / "state.json").exists()
    assert health_status(state.services["keyframes"]) == "UNREACHABLE"
    with pytest.raises(ProcessLookupError):
        os.kill(state.pid, 0)


def _service_pid(log: Path, address: str) -> int:
    """The pid listening on the service port (from /proc, no extra tools)."""
    port = int(address.rsplit(":", 1)[1])
    inodes = set()
    for line in (
        Path("/proc/net/tcp").read_text().splitlines()[1:] + Path("/proc/net/tcp6").read_text().splitlines()[1:]
    ):
        parts = line.split()
        if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "0A":
            inodes.add(parts[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    raise AssertionError(f"no process listens on {address}; log: {log}")
