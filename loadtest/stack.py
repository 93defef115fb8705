"""Where the load goes: a stack this run starts on free loopback ports, or one already running (its state file).

Only loopback addresses are accepted as targets.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from tessera.runtime import model_repository
from tessera.runtime.stack import LocalStack, StackState

FIXTURE_MODELS = Path(__file__).resolve().parents[1] / "tests" / "fixtures"  # holds platform/models/add_sub


class TargetError(RuntimeError):
    """The target is missing, not ready or not on loopback."""


@dataclass
class Target:
    services: dict[str, str]  # service name -> host:port
    triton_grpc: str
    nats_url: str = ""  # scenarios that observe a cascade's internal subjects (monitoring detections) use it
    pids: dict[str, int] = field(default_factory=dict)  # process name -> pid, when this run owns the stack
    stack: LocalStack | None = None

    def address(self, service: str) -> str:
        if service not in self.services:
            raise TargetError(f"the stack runs no {service!r} service (has {sorted(self.services)})")
        return self.services[service]

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()


def _check_loopback(address: str) -> None:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise TargetError(f"{address}: load tests send traffic to loopback addresses only")


def attach(state_file: Path) -> Target:
    """A stack started by `tessera up` (read from its state file)."""
    state = StackState.load(state_file)
    if state is None or not state.ready:
        raise TargetError(f"no ready stack at {state_file}; start one with `tessera up --detach`")
    nats_host = state.nats_url.removeprefix("nats://")
    for address in [*state.services.values(), state.triton_grpc, nats_host]:
        _check_loopback(address)
    return Target(dict(state.services), state.triton_grpc, state.nats_url)


def start(build_dir: Path, services: list[str], media_roots: list[Path], trace_dir: Path | None = None) -> Target:
    """Our own stack on free ports under ``build_dir`` (model repository, logs, JetStream data).

    The trivial ``add_sub`` test model is placed in the repository first (the stack rebuilds only its own models
    and loads every model there), so the run can time ``runtime.inference`` against ``tritonclient`` as well.
    """
    if (FIXTURE_MODELS / "platform" / "models" / "add_sub").exists():
        model_repository.build(build_dir / "model_repository", services_root=FIXTURE_MODELS, only=["add_sub"])
    stack = LocalStack.on_free_ports(build_dir, services, media_roots=media_roots, trace_dir=trace_dir)
    try:
        state = stack.start()
    except BaseException:
        stack.stop()
        raise
    pids = {name: pid for name, pid in stack.pids().items() if name != "nats"}
    return Target(dict(state.services), state.triton_grpc, state.nats_url, pids, stack)


def cpu_seconds(pid: int, with_children: bool = True) -> float:
    """User + system CPU seconds of a live process, plus its live descendants' (Triton's python stubs)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in [pid, *(_descendants(pid) if with_children else [])]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)
