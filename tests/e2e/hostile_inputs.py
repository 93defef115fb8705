"""Hostile requests for any gRPC method, built from its descriptor alone (no knowledge of the service).

Each variant is the empty request with one field, at any depth up to ``MAX_DEPTH``, set to one hostile value:
identifiers the key-value store refuses, a 100 KB string, NUL and non-ASCII text, paths that leave the media roots,
garbage and oversized bytes, negative and extreme numbers, NaN and infinities, enum numbers the service never
defined, and repeated fields with thousands of entries. A new capability is covered the day its proto is served.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor, message, message_factory

FD = descriptor.FieldDescriptor

MAX_DEPTH = 3  # nested messages walked below the request
REPEATED_COUNT = 2000  # entries in an oversized repeated field

HOSTILE_STRINGS: tuple[str, ...] = (
    "x" * 100_000,
    "../x",
    "a b",
    "\x00",
    "*",
    ">",
    "%",
    "é☃",
    "/etc/passwd",
    "file:///etc/passwd",
    "-1",
    " ",
)
HOSTILE_BYTES: tuple[bytes, ...] = (
    b"\x00" * 16,
    b"not an image or a sound",
    b"\xff\xd8\xff\xe0" + b"\x00" * 64,  # a JPEG marker and nothing after it
    b"RIFF\xff\xff\xff\x7fWAVE",  # a WAV header that claims 2 GiB
    bytes(range(256)) * 4096,  # 1 MiB of noise
)
HOSTILE_SIGNED: tuple[int, ...] = (-1, -(2**31), 2**31 - 1)
HOSTILE_SIGNED64: tuple[int, ...] = (-1, -(2**63), 2**63 - 1)
HOSTILE_UNSIGNED: tuple[int, ...] = (2**32 - 1,)
HOSTILE_UNSIGNED64: tuple[int, ...] = (2**64 - 1,)
HOSTILE_FLOATS: tuple[float, ...] = (math.nan, math.inf, -math.inf, -1.0, 1e30)

_SIGNED32 = {FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32}
_SIGNED64 = {FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64}
_UNSIGNED32 = {FD.TYPE_UINT32, FD.TYPE_FIXED32}
_UNSIGNED64 = {FD.TYPE_UINT64, FD.TYPE_FIXED64}
_FLOATS = {FD.TYPE_FLOAT, FD.TYPE_DOUBLE}


@dataclass(frozen=True)
class Variant:
    """One hostile request: where the value went (``a.b[]``) and what it was, for the failure report."""

    path: str
    value: str
    request: message.Message


def scalar_values(field: FD) -> tuple[Any, ...]:
    """Hostile values for one scalar or enum field."""
    kind = field.type
    if kind == FD.TYPE_STRING:
        return HOSTILE_STRINGS
    if kind == FD.TYPE_BYTES:
        return HOSTILE_BYTES
    if kind == FD.TYPE_BOOL:
        return (True,)
    if kind == FD.TYPE_ENUM:
        return (max(v.number for v in field.enum_type.values) + 99,)
    if kind in _SIGNED32:
        return HOSTILE_SIGNED
    if kind in _SIGNED64:
        return HOSTILE_SIGNED64
    if kind in _UNSIGNED32:
        return HOSTILE_UNSIGNED
    if kind in _UNSIGNED64:
        return HOSTILE_UNSIGNED64
    if kind in _FLOATS:
        return HOSTILE_FLOATS
    raise ValueError(f"no hostile values for field type {kind} ({field.full_name})")


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(value)} long)"


def _field_variants(
    desc: descriptor.Descriptor, depth: int, seen: frozenset[str]
) -> Iterator[list[tuple[str, str, Any]]]:
    """Per field of ``desc``: its hostile settings as (path, shown value, setter) triples.

    A setter takes a message of type ``desc`` and applies the value to it."""
    for field in desc.fields:
        yield list(_one_field(field, depth, seen))


def _one_field(field: FD, depth: int, seen: frozenset[str]) -> Iterator[tuple[str, str, Any]]:
    name = field.name
    repeated = field.is_repeated
    if field.type == FD.TYPE_MESSAGE:
        sub = field.message_type
        if sub.GetOptions().map_entry:
            key_field, value_field = sub.fields_by_name["key"], sub.fields_by_name["value"]
            for key in scalar_values(key_field)[:4]:
                yield name + "{}", f"key {_describe(key)}", _map_setter(name, key, value_field)
            return
        if repeated:
            yield name + "[]", f"{REPEATED_COUNT} empty entries", _repeated_empty(name, REPEATED_COUNT)
        else:
            yield name, "empty message", _present(name)
        if depth >= MAX_DEPTH or sub.full_name in seen:
            return
        inner = _field_variants(sub, depth + 1, seen | {sub.full_name})
        for path, shown, setter in itertools.chain.from_iterable(_interleave(list(inner))):
            yield f"{name}{'[]' if repeated else ''}.{path}", shown, _nested(name, repeated, setter)
        return
    for value in scalar_values(field):
        if repeated:
            yield name + "[]", f"{REPEATED_COUNT} x {_describe(value)}", _repeated_scalar(name, value)
        else:
            yield name, _describe(value), _scalar(name, value)


def _interleave(groups: list[list[tuple[str, str, Any]]]) -> Iterator[list[tuple[str, str, Any]]]:
    """Round-robin over fields so a cap on the count still touches every field's first hostile values."""
    for row in itertools.zip_longest(*groups):
        yield [item for item in row if item is not None]


def _scalar(name: str, value: Any) -> Any:
    def setter(msg: message.Message) -> None:
        setattr(msg, name, value)

    return setter


def _repeated_scalar(name: str, value: Any) -> Any:
    def setter(msg: message.Message) -> None:
        # Long strings and bytes once, short ones many times: the message stays under the transport limit.
        count = 1 if isinstance(value, str | bytes) and len(value) > 1000 else REPEATED_COUNT
        getattr(msg, name).extend([value] * count)

    return setter


def _repeated_empty(name: str, count: int) -> Any:
    def setter(msg: message.Message) -> None:
        container = getattr(msg, name)
        for _ in range(count):
            container.add()

    return setter


def _present(name: str) -> Any:
    def setter(msg: message.Message) -> None:
        getattr(msg, name).SetInParent()

    return setter


def _nested(name: str, repeated: bool, inner: Any) -> Any:
    def setter(msg: message.Message) -> None:
        inner(getattr(msg, name).add() if repeated else getattr(msg, name))

    return setter


def _map_setter(name: str, key: Any, value_field: FD) -> Any:
    def setter(msg: message.Message) -> None:
        entry = getattr(msg, name)
        if value_field.type == FD.TYPE_MESSAGE:
            entry[key].SetInParent()
        else:
            entry[key] = scalar_values(value_field)[0]

    return setter


def variants(desc: descriptor.Descriptor, limit: int) -> list[Variant]:
    """The empty request, then up to ``limit - 1`` single-field hostile requests, every field's first values
    before any field's later ones."""
    cls = message_factory.GetMessageClass(desc)
    found = [Variant("", "empty request", cls())]
    groups = list(_field_variants(desc, 0, frozenset({desc.full_name})))
    for path, shown, setter in itertools.chain.from_iterable(_interleave(groups)):
        if len(found) >= limit:
            break
        request = cls()
        setter(request)
        found.append(Variant(path, shown, request))
    return found
