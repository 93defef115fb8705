"""runtime.inference against a real tritonserver (python backend) and the real add_sub model."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.runtime import deadlines
from tessera.runtime.errors import DeadlineExceeded, InvalidArgument, Unavailable
from tessera.runtime.inference import TritonClient
from tessera.runtime.processes import TritonServer, free_port


async def test_round_trip(triton_server: TritonServer) -> None:
    async with TritonClient(triton_server.grpc_url) as client:
        await client.wait_ready(["add_sub"], timeout_s=30)
        a = np.arange(5, dtype=np.float32)
        b = np.full(5, 2.0, dtype=np.float32)
        out = await client.infer("add_sub", {"INPUT0": a, "INPUT1": b})
        np.testing.assert_allclose(out["SUM"], a + b)
        np.testing.assert_allclose(out["DIFF"], a - b)


async def test_inputs_checked_against_config_before_sending(triton_server: TritonServer) -> None:
    async with TritonClient(triton_server.grpc_url) as client:
        a = np.ones(3, dtype=np.float32)
        with pytest.raises(InvalidArgument) as wrong_dtype:
            await client.infer("add_sub", {"INPUT0": a.astype(np.int32), "INPUT1": a})
        assert wrong_dtype.value.field == "add_sub.INPUT0"
        with pytest.raises(InvalidArgument, match="needs input"):
            await client.infer("add_sub", {"INPUT0": a})
        with pytest.raises(InvalidArgument, match="no input"):
            await client.infer("add_sub", {"INPUT0": a, "INPUT1": a, "EXTRA": a})
        with pytest.raises(InvalidArgument, match="does not match dims"):
            await client.infer("add_sub", {"INPUT0": a.reshape(1, 3), "INPUT1": a.reshape(1, 3)})


async def test_model_refusal_is_invalid_argument(triton_server: TritonServer) -> None:
    async with TritonClient(triton_server.grpc_url) as client:
        with pytest.raises(InvalidArgument, match="differ in length"):
            await client.infer("add_sub", {"INPUT0": np.ones(3, np.float32), "INPUT1": np.ones(4, np.float32)})


async def test_unknown_model_and_dead_server_are_unavailable(triton_server: TritonServer) -> None:
    async with TritonClient(triton_server.grpc_url) as client:
        with pytest.raises(Unavailable):
            await client.infer("no_such_model", {"X": np.ones(1, np.float32)})
    async with TritonClient(f"127.0.0.1:{free_port()}") as dead:
        with pytest.raises(Unavailable):
            await dead.infer("add_sub", {"INPUT0": np.ones(1, np.float32), "INPUT1": np.ones(1, np.float32)})
        with pytest.raises(Unavailable, match="not ready"):
            await dead.wait_ready(["add_sub"], timeout_s=0.5)


async def test_spent_deadline_is_not_sent(triton_server: TritonServer) -> None:
    async with TritonClient(triton_server.grpc_url) as client:
        await client.contract("add_sub")
        token = deadlines.set_remaining(-1.0)
        try:
            with pytest.raises(DeadlineExceeded):
                await client.infer("add_sub", {"INPUT0": np.ones(1, np.float32), "INPUT1": np.ones(1, np.float32)})
        finally:
            deadlines.reset(token)
