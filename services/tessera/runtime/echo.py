"""How error messages quote what a client sent: quoted, control characters escaped, bounded (pure, no I/O).

A 100 KB id echoed whole would not fit in gRPC's metadata and the client would see RESOURCE_EXHAUSTED instead of
the real error; domain code quotes client values with ``shown`` too, so this module imports nothing of gRPC.
"""

from __future__ import annotations

ECHO_CHARS = 64  # how much of a client's value a message repeats


def bounded(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "\u2026"


def shown(value: object, limit: int = ECHO_CHARS) -> str:
    """A client's value as a message repeats it: ``repr`` (quoted, control characters escaped), bounded."""
    return bounded(repr(value if isinstance(value, str | bytes) else str(value)), limit)
