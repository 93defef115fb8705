"""Triage end to end: the trained captioner and reasoner on real Triton, the audit stream on real JetStream.

Images are synthetic fundus photographs (skimage's retina with drawn lesions) and real non-fundus photographs;
every bad input gets its named status and the service keeps answering.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest
from PIL import Image

from tessera.common.v1 import common_pb2
from tessera.runtime import service
from tessera.runtime.bus import Bus
from tessera.runtime.config import ServerSettings
from tessera.runtime.processes import NatsServer, TritonServer
from tessera.triage import cases, fundus
from tessera.triage.api import audit_subject
from tessera.triage.client import TriageClient, TriageError, image_message
from tessera.triage.grading import CLASSES
from tessera.triage.v1 import triage_pb2 as pb


@pytest.fixture(scope="module")
async def client(nats_server: NatsServer, triton_server: TritonServer) -> AsyncIterator[TriageClient]:
    settings = ServerSettings(port=0, nats_url=nats_server.url, triton_url=triton_server.grpc_url)
    capability, server = await service.start("triage", settings)
    async with TriageClient.connect(f"127.0.0.1:{server.port}", timeout_s=60) as triage:
        for _ in range(600):  # SERVING once Triton has both models and their operating points were read
            try:
                await triage.list_tasks()
                break
            except TriageError:
                await asyncio.sleep(0.2)
        yield triage
    await server.server.stop(0)
    await capability.close()


def _fundus(cls: str, seed: int) -> tuple[np.ndarray, fundus.Sample]:
    rng = np.random.default_rng(seed)
    sample = fundus.synthesise(cases.sample_counts(cls, rng), rng)
    return sample.image, sample


def _png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


async def _refused(call: object) -> TriageError:
    try:
        await call  # type: ignore[misc]
    except TriageError as error:
        return error
    raise AssertionError("the call succeeded")


async def test_list_tasks_states_classes_thresholds_and_versions(client: TriageClient) -> None:
    (task,) = await client.list_tasks()
    assert task.task == "dr_grading" and next(iter(task.classes)) == "no_dr" and len(task.classes) == 5
    assert 0 < task.refer_threshold < 1 and 0 < task.ood_threshold < 1
    assert set(task.model_versions) == {"triage_captioner", "triage_reasoner"}
    assert all(len(v) == 16 for v in task.model_versions.values())
    assert "neovascularization" in task.grading_rules


async def test_clear_cases_are_graded_with_findings_uncertainty_and_a_cited_rationale(client: TriageClient) -> None:
    image, _sample = _fundus("proliferative", 21)
    reply = await client.assess([image], clinical_text="type 2 diabetes, 12 years", case_reference="case-1")
    assert reply.pathway == pb.PATHWAY_CAPTION_THEN_TEXT and reply.in_distribution_score > 0.5
    probs = {p.class_name: p.probability for p in reply.decision.probabilities}
    assert set(probs) == {"no_dr", "mild", "moderate", "severe", "proliferative"}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
    assert reply.decision.uncertainty and 0 <= reply.decision.entropy <= 1
    assert reply.decision.confidence == pytest.approx(max(probs.values()), abs=1e-6)
    assert any(f.kind == "neovascularization" for f in reply.findings), reply.findings_text
    assert reply.decision.class_name == "proliferative", reply
    cited = {f.id for f in reply.findings if f.kind == "neovascularization"}
    assert set(reply.cited_finding_ids) == cited and all(i in reply.rationale for i in cited)
    assert reply.findings_text.startswith("finding F1:")
    assert reply.clinical_text_sha256 and "diabetes" not in reply.SerializeToString().decode("latin-1")
    healthy, _ = _fundus("no_dr", 4)
    clear = await client.assess([healthy])
    assert clear.decision.class_name == "no_dr" and not clear.findings and not clear.cited_finding_ids


async def test_every_assessment_is_on_the_audit_stream_and_read_back(
    client: TriageClient, nats_server: NatsServer
) -> None:
    image, _ = _fundus("moderate", 8)
    reply = await client.assess([image], case_reference="audit-1")
    assert await client.get_assessment(reply.assessment_id) == reply
    async with await Bus.connect(nats_server.url, "triage-test") as bus:
        stored = await bus.last_message("TRIAGE_AUDIT", audit_subject(reply.assessment_id))
    assert stored is not None and pb.AssessResponse.FromString(stored) == reply
    assert reply.image_sha256 and len(reply.image_sha256[0]) == 64
    assert _png(image)[:100] not in stored  # no image bytes in the record
    missing = await _refused(client.get_assessment("0" * 32))
    assert missing.code == grpc.StatusCode.NOT_FOUND
    malformed = await _refused(client.get_assessment("../etc"))
    assert malformed.code == grpc.StatusCode.INVALID_ARGUMENT and "assessment_id" in malformed.fields


async def test_a_mirrored_eye_gets_the_same_quadrants(client: TriageClient) -> None:
    image, _sample = _fundus("moderate", 31)
    straight = await client.assess([image])
    mirrored = await client.assess([np.ascontiguousarray(image[:, ::-1])])
    assert [(f.kind, f.location, f.count) for f in straight.findings] == [
        (f.kind, f.location, f.count) for f in mirrored.findings
    ]


async def test_photographs_that_are_not_fundus_images_are_referred_ungraded(client: TriageClient) -> None:
    from skimage import data

    for picture in (data.chelsea(), data.coffee(), data.rocket()):
        reply = await client.assess([np.asarray(picture)])
        assert reply.refer and reply.refer_reason == pb.REFER_REASON_OUT_OF_DISTRIBUTION, reply.rationale
        assert not reply.HasField("decision") and not reply.findings
        assert await client.get_assessment(reply.assessment_id) == reply  # referrals are audited too


async def test_bad_inputs_get_named_statuses_and_the_service_keeps_answering(client: TriageClient) -> None:
    image, _ = _fundus("mild", 3)
    huge = _png(np.full((10_000, 10_000, 3), 90, np.uint8))  # 100 megapixels, ~100 kB of PNG
    gray = np.repeat(image.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    sideways = np.ascontiguousarray(np.rot90(image))
    cases_ = [
        ([common_pb2.Image(data=b"%PDF-1.7 a document", encoding=common_pb2.IMAGE_ENCODING_PNG)], {},
         grpc.StatusCode.INVALID_ARGUMENT, "images[0].data", "IMAGE_UNREADABLE"),
        ([common_pb2.Image(data=huge, encoding=common_pb2.IMAGE_ENCODING_PNG)], {},
         grpc.StatusCode.RESOURCE_EXHAUSTED, "images[0].data", "IMAGE_TOO_LARGE"),
        ([gray], {}, grpc.StatusCode.INVALID_ARGUMENT, "images[0].data", "IMAGE_GRAYSCALE"),
        ([sideways], {}, grpc.StatusCode.INVALID_ARGUMENT, "images[0]", "IMAGE_ROTATED"),
        ([image], {"clinical_text": "x" * (1024 * 1024)}, grpc.StatusCode.RESOURCE_EXHAUSTED, "clinical_text", None),
        ([image], {"task": "glaucoma"}, grpc.StatusCode.INVALID_ARGUMENT, "task", "UNKNOWN_TASK"),
        ([], {}, grpc.StatusCode.INVALID_ARGUMENT, "images", None),
        ([image] * 5, {}, grpc.StatusCode.INVALID_ARGUMENT, "images", None),
        ([common_pb2.Image(data=_png(image))], {}, grpc.StatusCode.INVALID_ARGUMENT, "images[0].encoding", None),
        ([image], {"case_reference": "a b/c"}, grpc.StatusCode.INVALID_ARGUMENT, "case_reference", None),
    ]  # fmt: skip
    for images, extra, code, field, reason in cases_:
        error = await _refused(client.assess(images, **extra))  # type: ignore[arg-type]
        assert error.code == code, (field, error)
        assert field in error.fields, (field, error.fields)
        if reason:
            assert error.reason == reason, (field, error.reason)
    still = await client.assess([image])
    assert still.HasField("decision")


async def test_several_images_of_one_eye_merge_their_findings(client: TriageClient) -> None:
    image, _ = _fundus("severe", 13)
    one = await client.assess([image])
    both = await client.assess([image, image_message(image)])
    assert [(f.kind, f.location, f.count) for f in both.findings] == [
        (f.kind, f.location, f.count) for f in one.findings
    ]
    assert len(both.image_sha256) == 2


async def test_a_resent_request_returns_the_recorded_assessment(client: TriageClient) -> None:
    image, _ = _fundus("mild", 44)
    first = await client.assess([image], request_id="case-44-try")
    again = await client.assess([image], request_id="case-44-try")
    assert again == first, "the retry is the recorded assessment, not a second one"
    other, _ = _fundus("moderate", 45)
    clash = await _refused(client.assess([other], request_id="case-44-try"))
    assert clash.code == grpc.StatusCode.ALREADY_EXISTS and "request_id" in clash.fields
    bad = await _refused(client.assess([image], request_id="Not An Id!"))
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and "request_id" in bad.fields
    fresh = await client.assess([image])  # the client's own key: a new assessment each call
    assert fresh.assessment_id != first.assessment_id


async def test_referral_follows_the_grade_range_and_the_threshold(client: TriageClient) -> None:
    (task,) = await client.list_tasks()
    reasons = set()
    for seed in range(12):
        image, _ = _fundus(("mild", "moderate", "severe")[seed % 3], 100 + seed)
        reply = await client.assess([image])
        d = reply.decision
        unstable = d.lowest_class != d.highest_class
        assert reply.refer == (unstable or d.confidence < task.refer_threshold), reply
        if unstable:
            assert reply.refer_reason == pb.REFER_REASON_UNSTABLE_FINDINGS and "unsure" in d.uncertainty
            assert any(f.faint_count or f.possible_count for f in reply.findings), reply.findings
        elif reply.refer:
            assert reply.refer_reason == pb.REFER_REASON_LOW_CONFIDENCE
        reasons.add(reply.refer_reason)
        lowest, highest = CLASSES.index(d.lowest_class), CLASSES.index(d.highest_class)
        assert lowest <= highest
    assert pb.REFER_REASON_UNSPECIFIED in reasons, "most clear cases are decided"
