"""The cry service in this test process against a given Triton, with a connected client once it is SERVING."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from tessera.cry.client import CryClient, CryError
from tessera.runtime import service
from tessera.runtime.config import ServerSettings


@contextlib.asynccontextmanager
async def running_cry(
    triton_grpc_url: str, media_root: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[CryClient]:
    settings = ServerSettings(port=0, triton_url=triton_grpc_url, media_roots=[media_root])
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        capability, server = await service.start("cry", settings)
    try:
        async with CryClient.connect(f"127.0.0.1:{server.port}", timeout_s=60) as cry:
            for _ in range(600):  # SERVING once Triton has the model and its operating point was read
                try:
                    await cry.get_model()
                    break
                except CryError:
                    await asyncio.sleep(0.2)
            yield cry
    finally:
        await server.server.stop(0)
        await capability.close()
