"""The client's deadline, carried from the gRPC handler to every call below it (Triton, NATS requests)."""

from __future__ import annotations

import contextvars
import time

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("tessera_deadline", default=None)


def set_remaining(seconds: float | None) -> contextvars.Token[float | None]:
    return _deadline.set(None if seconds is None else time.monotonic() + seconds)


def reset(token: contextvars.Token[float | None]) -> None:
    try:
        _deadline.reset(token)
    except ValueError:  # a streaming handler finalised from another task's context: nothing to restore there
        _deadline.set(None)


def remaining() -> float | None:
    """Seconds left before the current request's deadline, or None when the client set none."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def bounded(timeout_s: float) -> float:
    """A per-call timeout that never outlives the request's deadline."""
    left = remaining()
    return timeout_s if left is None else max(0.0, min(timeout_s, left))
