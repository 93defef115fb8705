"""The reflection-driven hostile request generator reaches every field and stays under the transport limit."""

from __future__ import annotations

import math

from tests.e2e.hostile_inputs import HOSTILE_STRINGS, MAX_DEPTH, variants

from tessera.monitoring.v1 import monitoring_pb2 as pb


def test_every_top_level_field_gets_a_hostile_value_before_the_cap_is_reached() -> None:
    desc = pb.CreateRoomRequest.DESCRIPTOR
    found = variants(desc, 1 + 4 * len(desc.fields))
    assert found[0].path == "" and found[0].request.ByteSize() == 0
    touched = {v.path.split(".")[0].rstrip("[]{}") for v in found[1:]}
    assert touched == {f.name for f in desc.fields}
    for v in found[1:]:
        assert v.request.ByteSize() > 0 or v.value == "empty message", v.path


def test_values_are_hostile_and_nested_fields_are_walked_to_a_bounded_depth() -> None:
    found = variants(pb.CreateRoomRequest.DESCRIPTOR, 10_000)
    strings = [v for v in found if v.value.startswith(("'x", "'..", "'\\x00"))]
    assert strings and any(len(v.request.SerializeToString()) > 100_000 for v in strings)
    assert max(v.path.count(".") for v in found) <= MAX_DEPTH
    assert any(v.path.startswith("rules.zones[].") for v in found)
    assert all(len(v.request.SerializeToString()) < 4 * 1024 * 1024 for v in found)  # under gRPC's default limit
    assert len(HOSTILE_STRINGS) >= 10


def test_enums_get_a_number_the_service_never_defined_and_floats_get_nan() -> None:
    found = variants(pb.AnalyzeClipRequest.DESCRIPTOR, 10_000)
    policy = [v for v in found if v.path == "policy"]
    assert policy and policy[0].request.policy not in pb.FusionPolicy.values()
    floats = [v for v in found if v.value == "nan"]
    assert floats and any(math.isnan(getattr(_leaf(v.request, v.path), v.path.split(".")[-1])) for v in floats)


def _leaf(message: object, path: str) -> object:
    for part in path.split(".")[:-1]:
        message = getattr(message, part.rstrip("[]"))
        if part.endswith("[]"):
            message = message[0]  # type: ignore[index]
    return message
