"""Masked vectors on the wire: SecAgg+ values live in Z_m, so they need ceil(log2 m) bits, not Flower's int64.

Flower's SecAgg+ client uploads each masked array as int64 ``.npy`` bytes. With 8-bit quantisation (256 levels)
and modulus m = 2^16, a sum of up to 255 clients cannot wrap, and each value fits in two bytes: 4x less than int64.
A packed array is ``ndim (u8) | dims (u32 each) | values (little-endian uint of the modulus' width)``. Pure numpy.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

MAX_DIMS = 4


class MalformedUpdate(ValueError):
    """A masked vector that cannot be a client's honest upload: it is dropped from the round, the reason logged."""


def word_dtype(modulus: int) -> np.dtype[Any]:
    """The narrowest unsigned integer that holds every value of Z_modulus."""
    if modulus < 2 or modulus > 2**63:
        raise ValueError(f"modulus must be in [2, 2^63], got {modulus}")
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if modulus - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype).newbyteorder("<")
    raise AssertionError("unreachable")


def pack(arrays: Sequence[NDArray[Any]], modulus: int) -> list[bytes]:
    dtype = word_dtype(modulus)
    out = []
    for array in arrays:
        values = np.asarray(array)
        if values.ndim > MAX_DIMS:
            raise ValueError(f"at most {MAX_DIMS} dimensions, got {values.ndim}")
        if values.size and (values.min() < 0 or values.max() >= modulus):
            raise ValueError(f"values outside [0, {modulus})")
        header = struct.pack(f"<B{values.ndim}I", values.ndim, *values.shape)
        out.append(header + values.astype(dtype).tobytes())
    return out


def unpack(
    blobs: Sequence[bytes], modulus: int, expected: Sequence[tuple[int, ...]] | None = None
) -> list[NDArray[np.int64]]:
    """Raises ``MalformedUpdate`` for a truncated or padded array, too many dimensions, other shapes than
    ``expected`` (when given), or values outside Z_modulus."""
    dtype = word_dtype(modulus)
    if expected is not None and len(blobs) != len(expected):
        raise MalformedUpdate(f"{len(blobs)} arrays, the round expects {len(expected)}")
    arrays = []
    for i, blob in enumerate(blobs):
        if not isinstance(blob, bytes) or len(blob) < 1:
            raise MalformedUpdate(f"array {i}: empty or not bytes")
        ndim = blob[0]
        if ndim > MAX_DIMS or len(blob) < 1 + 4 * ndim:
            raise MalformedUpdate(f"array {i}: header of {ndim} dimensions in {len(blob)} bytes")
        shape = tuple(struct.unpack_from(f"<{ndim}I", blob, 1))
        body = memoryview(blob)[1 + 4 * ndim :]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if len(body) != count * dtype.itemsize:
            raise MalformedUpdate(f"array {i}: {len(body)} value bytes for shape {list(shape)}")
        if expected is not None and shape != tuple(expected[i]):
            raise MalformedUpdate(f"array {i}: shape {list(shape)}, the round expects {list(expected[i])}")
        values = np.frombuffer(body, dtype=dtype).reshape(shape).astype(np.int64)
        if values.size and int(values.max()) >= modulus:
            raise MalformedUpdate(f"array {i}: values outside Z_{modulus}")
        arrays.append(values)
    return arrays
