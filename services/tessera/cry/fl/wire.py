"""The codec on Flower's two ends (thin adapters over ``codec``), and what each client's replies weigh on the wire.

- ``packed_masked_vectors_mod`` (ClientApp mod, outside ``secaggplus_mod``): re-encodes the int64 masked arrays of
  the collect stage in the modulus' width.
- ``WireGrid`` (ServerApp side, wrapped around the Grid the SecAgg+ workflow talks to): unpacks them back, refuses
  an oversized or malformed upload (the reply becomes an error: the workflow counts that client as dropped out, so
  it never enters the sum), and records every reply's serialised size per client and round.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

import numpy as np
from flwr.app import Context, Message
from flwr.app.error import Error
from flwr.app.message_type import MessageType
from flwr.common import bytes_to_ndarray, ndarray_to_bytes
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, RECORD_KEY_STATE, Key
from flwr.common.serde import recorddict_to_proto
from flwr.serverapp import Grid

from tessera.cry.fl import codec

log = logging.getLogger("tessera.cry.fl")

REJECTED_UPLOAD = 900  # Flower error code of a reply the coordinator refused (codes below 100 are Flower's own)


def wire_bytes(message: Message) -> int:
    """Serialised size of a message's content: what Flower's gRPC transport carries (less a few header bytes)."""
    return 0 if message.has_error() else recorddict_to_proto(message.content).ByteSize()


def packed_masked_vectors_mod(
    message: Message, context: Context, call_next: Callable[[Message, Context], Message]
) -> Message:
    reply = call_next(message, context)
    if message.metadata.message_type != MessageType.TRAIN or reply.has_error():
        return reply
    configs = reply.content.config_records.get(RECORD_KEY_CONFIGS)
    if configs is None or Key.MASKED_PARAMETERS not in configs:
        return reply
    modulus = int(cast(int, context.state.config_records[RECORD_KEY_STATE][Key.MOD_RANGE]))
    arrays = [bytes_to_ndarray(b) for b in cast(list[bytes], configs[Key.MASKED_PARAMETERS])]
    configs[Key.MASKED_PARAMETERS] = codec.pack(arrays, modulus)
    return reply


@dataclass
class WireLog:
    """Bytes each client sent, by round and node (all four SecAgg+ stages), and the uploads refused."""

    sent: dict[int, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    rejected: list[tuple[int, int, str]] = field(default_factory=list)  # (round, node, reason)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def per_client(self, round_number: int) -> list[int]:
        return sorted(self.sent.get(round_number, {}).values())


class WireGrid(Grid):
    """Delegates to the real Grid; unpacks, checks and measures the clients' replies."""

    def __init__(
        self,
        grid: Grid,
        modulus: int,
        expected_shapes: list[tuple[int, ...]],
        max_upload_bytes: int,
        wire: WireLog,
        round_of: Callable[[], int],
    ) -> None:
        self.inner = grid
        self.modulus = modulus
        self.expected = expected_shapes
        self.max_upload_bytes = max_upload_bytes
        self.wire = wire
        self.round_of = round_of

    # The Grid interface, delegated.
    def set_run(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.inner.set_run(*args, **kwargs)

    @property
    def run(self):  # type: ignore[no-untyped-def]
        return self.inner.run

    def create_message(self, *args, **kwargs) -> Message:  # type: ignore[no-untyped-def]
        return self.inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        sent = {m.metadata.dst_node_id: m for m in messages}
        replies = self.inner.send_and_receive(list(sent.values()), timeout=timeout)
        return [self._accept(reply, sent) for reply in replies]

    def _accept(self, reply: Message, sent: dict[int, Message]) -> Message:
        node = reply.metadata.src_node_id
        size = wire_bytes(reply)
        round_number = self.round_of()
        with self.wire.lock:
            self.wire.sent[round_number][node] += size
        if reply.has_error():
            return reply
        configs = reply.content.config_records.get(RECORD_KEY_CONFIGS)
        if configs is None or Key.MASKED_PARAMETERS not in configs:
            return reply
        try:
            if size > self.max_upload_bytes:
                raise codec.MalformedUpdate(f"{size} bytes, at most {self.max_upload_bytes}")
            blobs = configs[Key.MASKED_PARAMETERS]
            if not isinstance(blobs, list):
                raise codec.MalformedUpdate("masked vector is not a list of arrays")
            arrays = codec.unpack(cast(list[bytes], blobs), self.modulus, self.expected)
        except codec.MalformedUpdate as exc:
            log.warning("round %d: upload of node %d rejected: %s", round_number, node, exc)
            with self.wire.lock:
                self.wire.rejected.append((round_number, node, str(exc)))
            request = sent.get(node)
            if request is None:
                raise
            return Message(Error(REJECTED_UPLOAD, f"upload rejected: {exc}"), reply_to=request)
        configs[Key.MASKED_PARAMETERS] = [ndarray_to_bytes(np.asarray(a)) for a in arrays]
        return reply
