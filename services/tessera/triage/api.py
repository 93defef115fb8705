"""gRPC adapter of the triage service: caption-then-reason, with every assessment on the audit stream first.

Assess: photographs checked and decoded (``photos``), brought into the normalised frame (``fundus.orient``), the
captioner (Triton) writes findings text and says whether each image is a fundus at all; an out-of-distribution
image is referred ungraded; otherwise the findings of all images are merged and the text-only reasoner (Triton)
decides. The response is published to the audit stream (JetStream, one subject per assessment) before it is
returned, so GetAssessment reads it back by subject. Neither image bytes nor clinical text are logged or stored:
only their sha256.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from typing import Any

import grpc
import numpy as np

from tessera.common.v1 import common_pb2
from tessera.runtime import config
from tessera.runtime.bus import Bus, StreamSpec
from tessera.runtime.errors import AlreadyExists, InvalidArgument, NotFound, ResourceExhausted
from tessera.runtime.identifiers import check_id
from tessera.runtime.inference import TritonClient
from tessera.runtime.server import ServiceRegistration, not_ready_error
from tessera.runtime.service import Capability, serving_when_models_ready
from tessera.triage import findings, fundus, grading, photos
from tessera.triage.contracts import CAPTIONER, MODELS, REASONER, TriageModels
from tessera.triage.decision import decide
from tessera.triage.settings import TriageSettings
from tessera.triage.v1 import triage_pb2 as pb
from tessera.triage.v1 import triage_pb2_grpc as pb_grpc

log = logging.getLogger("tessera.triage")
SERVICE_NAME = "tessera.triage.v1.TriageService"
Context = grpc.aio.ServicerContext[Any, Any]
PREFIX = "tessera.triage"
_ENCODINGS: dict[int, photos.Encoding] = {
    common_pb2.IMAGE_ENCODING_JPEG: "jpeg",
    common_pb2.IMAGE_ENCODING_PNG: "png",
    common_pb2.IMAGE_ENCODING_RAW_RGB8: "raw_rgb8",
}


def audit_stream(own: TriageSettings) -> StreamSpec:
    return StreamSpec(
        "TRIAGE_AUDIT",
        (f"{PREFIX}.*.audit",),
        storage="memory" if own.audit_storage == "memory" else "file",
        max_age_s=own.audit_max_age_days * 86400.0,
        duplicate_window_s=600.0,
    )


def audit_subject(assessment_id: str) -> str:
    return f"{PREFIX}.{assessment_id}.audit"


def _is_assessment_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


class TriageServicer(pb_grpc.TriageServiceServicer):
    def __init__(self, own: TriageSettings, bus: Bus, triton: TritonClient) -> None:
        self.own = own
        self.bus = bus
        self.models = TriageModels(triton)
        self.stream = audit_stream(own)
        self.limits = photos.Limits(own.max_image_bytes, own.max_pixels, own.min_side_px)
        self.ready = False

    async def start(self, _: object) -> None:
        await self.bus.ensure(self.stream)

    async def models_ready(self) -> None:
        """One call to each model on a blank frame: their versions and operating points (MODEL_INFO)."""
        await self.models.caption(np.zeros((1, fundus.SIZE, fundus.SIZE, 3), np.uint8))
        await self.models.reason(findings.NO_LESION, "")
        self.ready = True

    # -- operating points ------------------------------------------------------------------------------------
    def _require_ready(self) -> None:
        if not self.ready:
            raise not_ready_error("triage")

    @property
    def refer_threshold(self) -> float:
        if self.own.refer_threshold is not None:
            return self.own.refer_threshold
        return float(self.models.info[REASONER]["refer_threshold"])

    @property
    def ood_threshold(self) -> float:
        if self.own.ood_threshold is not None:
            return self.own.ood_threshold
        return float(self.models.info[CAPTIONER]["ood_threshold"])

    def _versions(self) -> dict[str, str]:
        return {name: str(info.get("version", "")) for name, info in sorted(self.models.info.items())}

    # -- RPCs -------------------------------------------------------------------------------------------------
    async def ListTasks(self, request: pb.ListTasksRequest, context: Context) -> pb.ListTasksResponse:
        self._require_ready()
        task = pb.Task(
            task=grading.TASK,
            description="Diabetic retinopathy grade from a colour fundus photograph (decision support, not a "
            "diagnosis; the reference models are trained on synthetic images)",
            classes=list(grading.CLASSES),
            refer_threshold=self.refer_threshold,
            ood_threshold=self.ood_threshold,
            model_versions=self._versions(),
            grading_rules=grading.RULES,
        )
        return pb.ListTasksResponse(tasks=[task])

    async def GetAssessment(self, request: pb.GetAssessmentRequest, context: Context) -> pb.GetAssessmentResponse:
        if not _is_assessment_id(request.assessment_id):
            raise InvalidArgument("must be the 32 hex characters an Assess response returned", field="assessment_id")
        data = await self.bus.last_message(self.stream.name, audit_subject(request.assessment_id))
        if data is None:
            raise NotFound("no such assessment", field="assessment_id")
        return pb.GetAssessmentResponse(assessment=pb.AssessResponse.FromString(data))

    def _check(self, request: pb.AssessRequest) -> None:
        if not request.task:
            raise InvalidArgument(f"must name a task ({grading.TASK})", field="task")
        if request.task != grading.TASK:
            raise InvalidArgument(f"unknown task; ListTasks names {grading.TASK}", field="task", reason="UNKNOWN_TASK")
        if not request.images:
            raise InvalidArgument("at least one image is required", field="images")
        if len(request.images) > self.own.max_images:
            raise InvalidArgument(f"at most {self.own.max_images} images of one eye", field="images")
        clinical = request.clinical_text.encode()
        if len(clinical) > self.own.max_clinical_text_bytes:
            raise ResourceExhausted(
                f"{len(clinical)} bytes, above the limit of {self.own.max_clinical_text_bytes}", field="clinical_text"
            )
        if request.request_id:
            check_id(request.request_id, "request_id")
        reference = request.case_reference
        if len(reference) > 128 or any(not (c.isascii() and (c.isalnum() or c in "-_.")) for c in reference):
            raise InvalidArgument("letters, digits, '-', '_' and '.', at most 128", field="case_reference")
        for i, image in enumerate(request.images):
            if image.encoding not in _ENCODINGS:
                raise InvalidArgument(
                    "must be IMAGE_ENCODING_JPEG, IMAGE_ENCODING_PNG or IMAGE_ENCODING_RAW_RGB8",
                    field=f"images[{i}].encoding",
                )

    def _decode(self, request: pb.AssessRequest) -> list[fundus.Oriented]:
        oriented = []
        for i, image in enumerate(request.images):
            try:
                rgb = photos.decode(
                    image.data, _ENCODINGS[image.encoding], image.width_px, image.height_px, self.limits
                )
            except photos.PhotoError as exc:
                kind = ResourceExhausted if exc.too_large else InvalidArgument
                raise kind(str(exc), field=f"images[{i}].{exc.field}", reason=exc.reason) from None
            oriented.append(fundus.orient(rgb))
        return oriented

    async def _recorded(self, assessment_id: str, request: pb.AssessRequest) -> pb.AssessResponse | None:
        """The assessment an earlier request with this idempotency key recorded, if any (same images only)."""
        data = await self.bus.last_message(self.stream.name, audit_subject(assessment_id))
        if data is None:
            return None
        recorded = pb.AssessResponse.FromString(data)
        digests = [hashlib.sha256(image.data).hexdigest() for image in request.images]
        if list(recorded.image_sha256) != digests:
            raise AlreadyExists("this request_id was used for other images", field="request_id")
        return recorded

    async def Assess(self, request: pb.AssessRequest, context: Context) -> pb.AssessResponse:
        began = time.perf_counter()
        self._require_ready()
        self._check(request)
        assessment_id = uuid.uuid4().hex
        if request.request_id:  # idempotent: the id follows from the key, and a retry returns what was recorded
            assessment_id = hashlib.sha256(f"{request.task}/{request.request_id}".encode()).hexdigest()[:32]
            recorded = await self._recorded(assessment_id, request)
            if recorded is not None:
                return recorded
        oriented = await asyncio.to_thread(self._decode, request)
        captions = await self.models.caption(np.stack([o.frame for o in oriented]))
        response = pb.AssessResponse(
            assessment_id=assessment_id,
            task=request.task,
            pathway=pb.PATHWAY_CAPTION_THEN_TEXT,
            image_sha256=[hashlib.sha256(image.data).hexdigest() for image in request.images],
            case_reference=request.case_reference,
            created_unix_ms=int(time.time() * 1000),
        )
        if request.clinical_text:
            response.clinical_text_sha256 = hashlib.sha256(request.clinical_text.encode()).hexdigest()
        in_distribution = min(c.in_distribution for c in captions)
        response.in_distribution_score = in_distribution
        if in_distribution < self.ood_threshold:
            worst = min(range(len(captions)), key=lambda i: captions[i].in_distribution)
            response.refer = True
            response.refer_reason = pb.REFER_REASON_OUT_OF_DISTRIBUTION
            response.rationale = (
                f"images[{worst}] does not look like a fundus photograph (in-distribution {in_distribution:.2f} < "
                f"{self.ood_threshold:.2f}): not graded; refer to a human reader"
            )
        else:
            for i, o in enumerate(oriented):
                if o.rotated:
                    raise InvalidArgument(f"{o.rotated}; send it upright", field=f"images[{i}]", reason="IMAGE_ROTATED")
            merged = findings.merge(findings.parse(c.findings_text)[0] for c in captions)
            text = findings.to_text(merged)
            probs = await self.models.reason(text, request.clinical_text)
            decided = decide(probs, grading.CLASSES, self.refer_threshold)
            cited = [grading.CitedFinding(f.id, f.kind, f.location, f.count, f.faint, f.possible) for f in merged]
            rationale, cited_ids = grading.rationale(decided.class_name, cited)
            lowest, highest = grading.grade_range(cited)
            uncertainty = decided.uncertainty
            if lowest != highest:
                uncertainty += (
                    f". The grading rules give {lowest} without the faint lesions and {highest} with the possible "
                    "ones: the grade depends on lesions the captioner is unsure of; refer to a human reader"
                )
            response.findings.extend(
                pb.Finding(
                    kind=f.kind,
                    location=f.location,
                    count=f.count,
                    confidence=f.confidence,
                    id=f.id,
                    faint_count=f.faint,
                    possible_count=f.possible,
                )
                for f in merged
            )
            response.findings_text = text
            response.decision.CopyFrom(
                pb.Decision(
                    class_name=decided.class_name,
                    probabilities=[
                        pb.ClassProbability(class_name=c, probability=p) for c, p in decided.probabilities.items()
                    ],
                    confidence=decided.confidence,
                    entropy=decided.entropy,
                    uncertainty=uncertainty,
                    lowest_class=lowest,
                    highest_class=highest,
                )
            )
            response.refer = decided.refer or lowest != highest
            if lowest != highest:
                response.refer_reason = pb.REFER_REASON_UNSTABLE_FINDINGS
            elif decided.refer:
                response.refer_reason = pb.REFER_REASON_LOW_CONFIDENCE
            response.rationale = rationale
            response.cited_finding_ids.extend(cited_ids)
        response.model_versions.update(self._versions())
        response.latency_ms = (time.perf_counter() - began) * 1000
        # Durable before it is returned: a response the audit stream does not hold is never given out.
        ack = await self.bus.publish(
            audit_subject(response.assessment_id), response.SerializeToString(), msg_id=response.assessment_id
        )
        if ack.duplicate:  # a concurrent retry recorded it first: answer with that record
            recorded = await self._recorded(response.assessment_id, request)
            if recorded is not None:
                return recorded
        log.info(
            "assessment %s task=%s class=%s refer=%s reason=%s images=%d latency_ms=%.0f",
            response.assessment_id,
            response.task,
            response.decision.class_name or "-",
            response.refer,
            pb.ReferReason.Name(response.refer_reason),
            len(request.images),
            response.latency_ms,
        )
        return response


async def create(settings: config.ServerSettings) -> Capability:
    own = config.load(TriageSettings)
    bus = await Bus.connect(settings.nats_url, "triage")
    triton = TritonClient(settings.triton_url, default_timeout_s=settings.triton_timeout_s)
    servicer = TriageServicer(own, bus, triton)
    return Capability(
        name="triage",
        services=[ServiceRegistration(SERVICE_NAME, pb_grpc.add_TriageServiceServicer_to_server, servicer)],
        on_start=[
            serving_when_models_ready(
                triton, SERVICE_NAME, list(MODELS), own.models_ready_timeout_s, then=servicer.models_ready
            ),
            servicer.start,
        ],
        on_close=[bus.close, triton.close],
    )
