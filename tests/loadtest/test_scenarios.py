"""Every service scenario is in the profiles with its service; the triage scenario's requests, offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from loadtest.scenarios import capability_scenarios, factory, known, model_stations, triage
from loadtest.stack import Target

from tessera.common.v1 import common_pb2
from tessera.triage import photos
from tessera.triage.client import image_message
from tessera.triage.grading import CLASSES, TASK

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_every_service_scenario_has_a_section_and_its_service(profile: str) -> None:
    data = yaml.safe_load((ROOT / "loadtest" / "profiles" / f"{profile}.yaml").read_text())
    for name in capability_scenarios():
        assert name in data["scenarios"], f"{profile}.yaml has no {name} section"
        assert name in data["services"], f"{profile}.yaml does not start the {name} service"
    names = set(known())
    assert set(data["scenarios"]) <= names and set(data.get("validate") or []) <= names


def test_triage_is_discovered_and_its_models_are_stations() -> None:
    assert factory("triage") == triage.SCENARIO.create
    stations = model_stations()
    assert {"triage_captioner", "triage_reasoner"} <= set(stations)
    assert factory("triage_captioner") is not None and factory("triage_reasoner") is not None


@pytest.fixture(scope="module")
def pool() -> list[tuple[str, np.ndarray]]:
    return triage.fundus_pool()


def test_the_pool_is_one_photograph_per_grade_and_the_same_every_run(pool: list[tuple[str, np.ndarray]]) -> None:
    assert [grade for grade, _ in pool] == list(CLASSES)
    assert all(rgb.shape == (256, 256, 3) and rgb.dtype == np.uint8 for _, rgb in pool)
    assert len({rgb.tobytes() for _, rgb in pool}) == len(CLASSES)
    again = triage.fundus_pool()
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(pool, again, strict=True))
    frames = triage.frames_of(pool)
    assert frames.shape == (len(CLASSES), 256, 256, 3) and frames.dtype == np.uint8


async def test_triage_requests_take_the_pool_in_turn(pool: list[tuple[str, np.ndarray]]) -> None:
    target = Target({"triage": "127.0.0.1:1"}, "127.0.0.1:2")
    scenario = await triage.SCENARIO.create(target, {"images_per_request": 2, "clinical_text": "t2dm"})
    scenario.pool = pool
    scenario.messages = [image_message(rgb) for _, rgb in pool]
    first, second = scenario.request(0), scenario.request(4)
    assert first.task == TASK and first.clinical_text == "t2dm"
    assert [m.data for m in first.images] == [scenario.messages[0].data, scenario.messages[1].data]
    assert [m.data for m in second.images] == [scenario.messages[4].data, scenario.messages[0].data]  # wraps round
    assert all(m.encoding == common_pb2.IMAGE_ENCODING_PNG and m.width_px == 256 for m in first.images)
    limits = photos.Limits(1 << 25, 40_000_000, 128)
    assert np.array_equal(photos.decode(first.images[0].data, "png", 256, 256, limits), pool[0][1])  # lossless
    scenario._profile_decode(rounds=1)
    assert len(scenario.decode_ms) == len(pool) and all(ms > 0 for ms in scenario.decode_ms)
    extras = scenario.extras()
    assert extras["request"]["images_per_request"] == 2 and extras["decode_ms_per_image"] > 0


@pytest.mark.parametrize("images", [0, 5])
async def test_triage_refuses_more_images_than_the_service_takes(images: int) -> None:
    with pytest.raises(ValueError, match="images_per_request"):
        await triage.SCENARIO.create(Target({}, "127.0.0.1:2"), {"images_per_request": images})


def test_station_tensors_follow_the_model_contracts() -> None:
    (image,) = triage.captioner_inputs(np.zeros((3, 256, 256, 3), np.uint8))
    assert (image.name(), image.shape(), image.datatype()) == ("IMAGE", [3, 256, 256, 3], "UINT8")
    findings, clinical = triage.reasoner_inputs(b"no lesion found")
    assert [(t.name(), t.shape(), t.datatype()) for t in (findings, clinical)] == [
        ("FINDINGS", [1, 1], "BYTES"),
        ("CLINICAL", [1, 1], "BYTES"),
    ]


def test_cry_is_discovered_its_classifier_is_a_station_and_its_pool_is_fixed() -> None:
    from loadtest.scenarios import cry

    from tessera.cry.vocalisation import RATE, REASONS

    assert factory("cry") == cry.SCENARIO.create
    assert "cry_classifier" in model_stations() and factory("cry_classifier") is not None
    pool = cry.clip_pool()
    assert [reason for reason, _ in pool] == list(REASONS)
    assert all(len(audio) == int(3.5 * RATE) and audio.dtype == np.float32 for _, audio in pool)
    again = cry.clip_pool()
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(pool, again, strict=True))
    assert not np.array_equal(pool[0][1], cry.clip_pool(seed=8)[0][1])
