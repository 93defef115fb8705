"""Reading a client's request stream with an idle timeout: a stream that goes quiet is ended, not held forever."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

from tessera.runtime.errors import DeadlineExceeded

T = TypeVar("T")


async def next_or_idle(messages: AsyncIterator[T], timeout_s: float, quiet: str, reason: str) -> T | None:
    """The stream's next message, None at its end; ``DeadlineExceeded`` (ErrorInfo ``reason``) when nothing comes
    for ``timeout_s``: ``quiet`` says what was not received, the read is abandoned and the call ends."""
    try:
        return await asyncio.wait_for(anext(messages), timeout_s)
    except StopAsyncIteration:
        return None
    except TimeoutError:
        raise DeadlineExceeded(
            f"{quiet} received for {timeout_s:g} s: the stream is ended; open a new one to go on", reason=reason
        ) from None
