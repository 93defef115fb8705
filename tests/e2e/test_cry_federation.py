"""A federation round reaches the running cry service: published into the Triton model repository, loaded by
Triton, answered by GetModel and Classify with no restart of either (real Triton, real Flower engine)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from tests.e2e.cry_service import running_cry

from tessera.cry import corpus
from tessera.cry.client import CryClient
from tessera.cry.fl import simulation
from tessera.cry.fl.settings import CLASSIFIER, FederationSettings
from tessera.cry.vocalisation import RATE
from tessera.runtime import config
from tessera.runtime.model_repository import build
from tessera.runtime.processes import TritonServer, start_triton


@pytest.fixture(scope="module")
def cry_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TritonServer, Path]]:
    """A Triton of its own: the federation changes what it serves, which other tests must not see."""
    repo = tmp_path_factory.mktemp("cry-fl-triton-repo")
    build(repo, only=[CLASSIFIER])
    work = tmp_path_factory.mktemp("cry-fl-triton")
    server = start_triton(repo, work, work / "triton.log", models=[CLASSIFIER], timeout_s=240)
    yield server, repo
    server.stop()


@pytest.fixture(scope="module")
async def client(
    cry_triton: tuple[TritonServer, Path], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[CryClient]:
    async with running_cry(cry_triton[0].grpc_url, tmp_path_factory.mktemp("media")) as cry:
        yield cry


async def test_a_finished_round_is_served_without_a_restart(
    client: CryClient, cry_triton: tuple[TritonServer, Path]
) -> None:
    triton, repo = cry_triton
    before = await client.get_model()
    assert before.model_version == "cry-central" and before.round == 0
    settings = config.load(
        FederationSettings,
        rounds=1,
        families=4,
        fraction_fit=1.0,
        reset_adapters=False,
        model_repository=repo,
        triton_http_url=f"http://127.0.0.1:{triton.http_port}",
    )
    record = await asyncio.to_thread(simulation.run, settings)
    (outcome,) = record.coordinator.history
    assert outcome.accepted and outcome.version == 2
    after = await client.get_model()
    assert (after.model_version, after.round, after.clients_aggregated) == ("cry-r1", 1, 4)
    assert after.published_unix_ms > before.published_unix_ms
    assert after.figures.macro_f1 == pytest.approx(outcome.figures["macro_f1"])
    rng = np.random.default_rng(5)
    family = corpus.make_family(7100, 99, corpus.EVAL_BACKGROUNDS)
    recording = corpus.cry(family, rng, 3.0, reason=1)
    silence = np.zeros(RATE // 2, np.float32)
    result = await client.classify((np.concatenate([silence, recording.audio, silence]), RATE))
    assert result.model_version == "cry-r1" and any(s.cry_detected for s in result.segments)
