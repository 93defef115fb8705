"""A Triton model alone, called straight through tritonclient: the station the capacity planner sizes.

Stations, each a model of a capability:

- ``frame_relevance`` (keyframes): one thumbnail of the generated test video per request with a query, its
  detection cache off, so every call runs the detector;
- ``object_detector`` (monitoring): one camera frame of real video (OpenCV's ``vtest.avi``, longest side 640 px);
- ``audio_events`` (monitoring): one 0.98 s window of real speech (16 kHz) through YAMNet. Milliseconds per call,
  so a run of seconds holds thousands of requests: the station whose p95 a short run measures best;
- ``triage_captioner`` (triage): one synthetic fundus photograph of the triage scenario's pool (one per grade) in
  the normalised frame, as the service sends it;
- ``triage_reasoner`` (triage): the captioner's findings text of one of those photographs (read from the
  captioner once in setup), empty clinical text;
- ``cry_classifier`` (cry): the 3 s cry of one clip of the cry scenario's pool (one per reason), 16 kHz.

Nothing of the services is around them: a request is one Triton inference, served by the model's instances in
Triton's queue, which is the M/G/c station of the planner (servers = the model's instance count).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc.aio as triton_aio
from numpy.typing import NDArray
from tritonclient.grpc import InferInput, InferRequestedOutput

from loadtest.scenarios import cry, triage
from loadtest.scenarios.keyframes import scenario_video, video_path
from loadtest.stack import Target
from tessera.cry.contracts import CLASSIFIER
from tessera.cry.vocalisation import RATE
from tessera.keyframes.baselines import uniform_indices
from tessera.keyframes.frame_source import VideoFrameSource
from tessera.triage.contracts import CAPTIONER, REASONER

ROOT = Path(__file__).resolve().parents[2]
CAMERA_VIDEO = ROOT / "build" / "media" / "opencv-doc" / "vtest.avi"


@dataclass
class ModelScenario:
    target: Target
    model: str
    options: dict[str, Any]
    timeout_s: float
    name: str = ""
    frames: NDArray[Any] | None = None  # inputs taken in turn: images (uint8), audio windows (float32) or texts
    triton: triton_aio.InferenceServerClient | None = None
    instances: int = 1
    _turn: int = 0

    @classmethod
    async def create(cls, target: Target, options: dict[str, Any], model: str) -> ModelScenario:
        return cls(target, model, options, float(options.get("timeout_s", 30)), name=model)

    async def setup(self) -> None:
        self.triton = triton_aio.InferenceServerClient(self.target.triton_grpc)
        config = await self.triton.get_model_config(self.model, as_json=True)
        groups = config.get("config", {}).get("instance_group", [])
        self.instances = max(1, sum(int(g.get("count", 1)) for g in groups))
        if self.model == "audio_events":
            from tessera.runtime.audio import MODEL_RATE, WINDOW_SAMPLES, resample
            from tessera.translation.client import speech_wav

            pcm, rate = speech_wav("beckett.wav")
            speech = resample(pcm.astype(np.float32) / 32768.0, rate, MODEL_RATE)
            starts = range(0, len(speech) - WINDOW_SAMPLES, WINDOW_SAMPLES // 2)
            self.frames = np.stack([speech[i : i + WINDOW_SAMPLES] for i in starts]).astype(np.float32)
        elif self.model == "frame_relevance":
            video = scenario_video(float(self.options.get("video_minutes", 1)))
            candidates = max(1, int(video.duration_s))
            source = VideoFrameSource(video_path(video), "model", 1.0, 320, None)
            self.frames = await source.frames(uniform_indices(candidates, min(candidates, 16)))
        elif self.model == CLASSIFIER:
            self.frames = np.stack(
                [audio[-3 * RATE :] for _, audio in cry.clip_pool(int(self.options.get("seed", cry.SEED)))]
            )
        elif self.model in (CAPTIONER, REASONER):
            self.frames = triage.frames_of(triage.fundus_pool(int(self.options.get("seed", triage.SEED))))
            if self.model == REASONER:  # what the captioner writes about each photograph, one text per row
                result = await self.triton.infer(
                    CAPTIONER, triage.captioner_inputs(self.frames), outputs=[InferRequestedOutput("FINDINGS")]
                )
                self.frames = np.array([[bytes(t)] for t in result.as_numpy("FINDINGS").reshape(-1)], np.object_)
        else:
            from tessera.monitoring import analysis

            if not CAMERA_VIDEO.exists():
                raise FileNotFoundError(f"real media missing at {CAMERA_VIDEO}: run `make media`")
            decoded, _, _ = analysis.decode_video(CAMERA_VIDEO, 1.0, max_duration_s=600, max_side=640)
            self.frames = np.stack([rgb for _, rgb in decoded[:16]])
        await self.once(0.0)

    async def once(self, scheduled_s: float) -> None:
        assert self.triton is not None and self.frames is not None
        frame = self.frames[self._turn % len(self.frames)][None]
        self._turn += 1
        if self.model == "audio_events":
            wave = InferInput("WAVEFORM", list(frame.shape), "FP32")
            wave.set_data_from_numpy(frame)
            inputs, output, parameters = [wave], "SCORES", None
        elif self.model == "frame_relevance":
            frames = InferInput("FRAMES", list(frame.shape), "UINT8")
            frames.set_data_from_numpy(frame)
            query = InferInput("QUERY", [1, 1], "BYTES")
            query.set_data_from_numpy(np.array([[b"a person"]], dtype=np.object_))
            inputs, output, parameters = [frames, query], "SCORES", {"feature_cache": False}
        elif self.model == CLASSIFIER:  # no batch dimension: one segment per request
            inputs, output, parameters = cry.classifier_inputs(frame[0]), "PROBS", None
        elif self.model == CAPTIONER:
            inputs, output, parameters = triage.captioner_inputs(frame), "FINDINGS", None
        elif self.model == REASONER:
            inputs, output, parameters = triage.reasoner_inputs(frame[0, 0]), "PROBS", None
        else:
            images = InferInput("IMAGES", list(frame.shape), "UINT8")
            images.set_data_from_numpy(frame)
            inputs, output, parameters = [images], "COUNT", None
        result = await self.triton.infer(
            self.model,
            inputs,
            outputs=[InferRequestedOutput(output)],
            parameters=parameters,
            client_timeout=self.timeout_s,
        )
        result.as_numpy(output)

    def extras(self) -> dict[str, Any]:
        assert self.frames is not None
        return {
            "request": {
                "model": self.model,
                "input_shape": list(self.frames.shape[1:]),
                "feature_cache": False if self.model == "frame_relevance" else None,
            },
            "instances": self.instances,
        }

    async def close(self) -> None:
        if self.triton is not None:
            await self.triton.close()
