"""A typed client for the triage service: deadlines, retries on UNAVAILABLE for the reads, images from anything.

Every call is retried on UNAVAILABLE (``tessera.runtime.rpc_client``): ``get_assessment`` and ``list_tasks`` only
read, and ``assess`` sends an idempotency key (``request_id``, one per call unless given), so a resend after a lost
reply returns the assessment already recorded instead of recording the case twice.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import grpc
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tessera.common.v1 import common_pb2
from tessera.runtime.rpc_client import DEFAULT_RETRY, RetryPolicy, RpcCallError, ServiceClient
from tessera.triage.grading import TASK
from tessera.triage.v1 import triage_pb2 as pb
from tessera.triage.v1 import triage_pb2_grpc as pb_grpc

# An encoded JPEG/PNG (bytes or a file), an RGB array, or the proto itself.
ImageInput = bytes | Path | NDArray[np.uint8] | common_pb2.Image


class TriageError(RpcCallError):
    """A TriageService call that failed: code, message, the request fields named (e.g. images[0].data), reason."""


def image_message(image: ImageInput) -> common_pb2.Image:
    """The proto for one photograph; an array is sent as PNG (lossless)."""
    if isinstance(image, common_pb2.Image):
        return image
    if isinstance(image, np.ndarray):
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
        return common_pb2.Image(
            data=buffer.getvalue(),
            encoding=common_pb2.IMAGE_ENCODING_PNG,
            width_px=image.shape[1],
            height_px=image.shape[0],
        )
    data = image.read_bytes() if isinstance(image, Path) else image
    encoding = common_pb2.IMAGE_ENCODING_PNG if data[:8] == b"\x89PNG\r\n\x1a\n" else common_pb2.IMAGE_ENCODING_JPEG
    return common_pb2.Image(data=data, encoding=encoding)


class TriageClient(ServiceClient):
    error: ClassVar[type[RpcCallError]] = TriageError
    log: ClassVar[logging.Logger] = logging.getLogger("tessera.triage.client")

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout_s: float = 60.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        token: str | None = None,
    ) -> None:
        super().__init__(channel, timeout_s=timeout_s, retry=retry, token=token)
        self.stub: pb_grpc.TriageServiceAsyncStub = pb_grpc.TriageServiceStub(channel)

    async def assess(
        self,
        images: Sequence[ImageInput],
        *,
        task: str = TASK,
        clinical_text: str = "",
        case_reference: str = "",
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> pb.AssessResponse:
        """Findings, a calibrated decision (or a referral) and its rationale for photographs of one eye."""
        request = pb.AssessRequest(
            task=task,
            images=[image_message(i) for i in images],
            clinical_text=clinical_text,
            case_reference=case_reference,
            request_id=request_id or uuid.uuid4().hex,
        )
        return await self._unary("Assess", self.stub.Assess, request, timeout_s)

    async def get_assessment(self, assessment_id: str, *, timeout_s: float | None = None) -> pb.AssessResponse:
        request = pb.GetAssessmentRequest(assessment_id=assessment_id)
        reply = await self._unary("GetAssessment", self.stub.GetAssessment, request, timeout_s)
        return reply.assessment

    async def list_tasks(self, *, timeout_s: float | None = None) -> list[pb.Task]:
        reply = await self._unary("ListTasks", self.stub.ListTasks, pb.ListTasksRequest(), timeout_s)
        return list(reply.tasks)
