"""The monitoring cascade's NATS stage workers: detector, audio events and fusion.

- detector: FrameMessage -> object_detector on Triton -> FrameDetections (or a shed marker for a frame that waited
  longer than ``frame_max_lag_ms``: the backlog drains from its oldest end).
- audio: AudioWindowMessage -> audio_events on Triton -> AudioEvents (scores + embedding; audio is never shed).
- fusion: FrameDetections/AudioEvents -> the room's aligned evidence -> av_fusion score -> rules -> Alert on the
  durable alert stream, de-duplicated by alert id.

Every output is published with a message id derived from its input's (or, for alerts, from the room, rule and
evidence time), so a redelivered input does not duplicate an effect. The fusion worker keeps each room's recent
evidence and cooldown in memory; after a restart it rebuilds both from the streams (the last seconds of detections
and the room's recent alerts) before handling the room's next message, so a restart neither loses nor repeats alerts.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import Counter, Histogram

from tessera.monitoring import cascade, convert
from tessera.monitoring.contracts import MonitoringModels
from tessera.monitoring.evidence import RoomEvidence, tokens
from tessera.monitoring.fusion import Cooldown, Merge, Policy, decide
from tessera.monitoring.rules import RoomRules, RuleError
from tessera.monitoring.settings import MonitoringSettings
from tessera.monitoring.shedding import is_stale
from tessera.monitoring.v1 import cascade_pb2 as msg
from tessera.monitoring.v1 import monitoring_pb2 as pb
from tessera.monitoring.vision import ImageError, decode_image, frame_stats
from tessera.runtime import audio as audio_lib
from tessera.runtime import config
from tessera.runtime.bus import Bus, Delivery, KeyValueTable, PermanentError, derived_msg_id
from tessera.runtime.config import ServerSettings
from tessera.runtime.errors import InvalidArgument, Unavailable
from tessera.runtime.inference import TritonClient
from tessera.runtime.service import StageWorker

log = logging.getLogger("tessera.monitoring.workers")

FRAMES_SHED = Counter("tessera_monitoring_frames_shed", "frames dropped by the shedding policy", ["stage"])
FRAMES_DETECTED = Counter("tessera_monitoring_frames_detected", "frames run through the object detector")
AUDIO_WINDOWS = Counter("tessera_monitoring_audio_windows", "audio windows classified")
ALERTS = Counter("tessera_monitoring_alerts", "alerts published (first revisions)", ["source"])
MERGES = Counter("tessera_monitoring_alert_merges", "later rules merged into an open alert (re-sent revisions)")
ALERT_LATENCY = Histogram(
    "tessera_monitoring_alert_latency_seconds",
    "from the triggering evidence's wall-clock time to the alert's publication",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10),
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _triton(settings: ServerSettings) -> TritonClient:
    return TritonClient(settings.triton_url, default_timeout_s=settings.triton_timeout_s)


async def detector_stage(settings: ServerSettings, bus: Bus) -> StageWorker:
    own = config.load(MonitoringSettings)
    triton = _triton(settings)
    models = MonitoringModels(triton)

    async def handle(delivery: Delivery) -> None:
        frame = msg.FrameMessage.FromString(delivery.data)
        out = msg.FrameDetections(
            room_id=frame.room_id,
            seq=frame.seq,
            timestamp_ms=frame.timestamp_ms,
            stream_start_unix_ms=frame.stream_start_unix_ms,
            accepted_unix_ms=frame.accepted_unix_ms,
        )
        out_subject = cascade.subject(frame.room_id, "detections.frame")
        out_id = derived_msg_id(delivery.msg_id, "detector")
        if is_stale(frame.accepted_unix_ms, _now_ms(), own.frame_max_lag_ms):
            FRAMES_SHED.labels("detector").inc()
            out.shed = True
            await bus.publish(out_subject, out.SerializeToString(), msg_id=out_id)
            return
        await models.ensure_loaded()
        began = time.perf_counter()
        try:
            rgb = await asyncio.to_thread(decode_image, frame.image, models.input_px)
        except ImageError as exc:
            out.shed = True  # the credit comes back to the gateway; the frame goes to the dead-letter subject
            await bus.publish(out_subject, out.SerializeToString(), msg_id=out_id)
            raise PermanentError(f"frame {frame.room_id}/{frame.seq}: {exc}") from exc
        mean, std, detail = frame_stats(rgb)
        try:
            (boxes,) = await models.detect([rgb])
        except InvalidArgument as exc:
            raise PermanentError(str(exc)) from exc
        out.detections.extend(convert.box_to_proto(b) for b in boxes)
        out.stats.CopyFrom(msg.FrameStats(luma_mean=mean, luma_std=std, detail_energy=detail))
        out.detect_ms = (time.perf_counter() - began) * 1000
        FRAMES_DETECTED.inc()
        await bus.publish(out_subject, out.SerializeToString(), msg_id=out_id)

    return StageWorker(
        "detector",
        [cascade.WORK, cascade.ALERTS],
        cascade.CONSUMERS["detector"],
        handle,
        concurrency=own.detector_concurrency,
        on_close=[triton.close],
    )


async def audio_stage(settings: ServerSettings, bus: Bus) -> StageWorker:
    own = config.load(MonitoringSettings)
    triton = _triton(settings)
    models = MonitoringModels(triton)

    async def handle(delivery: Delivery) -> None:
        window = msg.AudioWindowMessage.FromString(delivery.data)
        began = time.perf_counter()
        if not audio_lib.MIN_RATE <= window.sample_rate_hz <= audio_lib.MAX_RATE or len(window.pcm16) % 2:
            raise PermanentError(f"audio window {window.room_id}/{window.seq}: bad rate or PCM length")
        samples = audio_lib.resample(audio_lib.from_pcm16(window.pcm16), window.sample_rate_hz)
        row = np.zeros(audio_lib.WINDOW_SAMPLES, np.float32)
        row[: min(len(samples), audio_lib.WINDOW_SAMPLES)] = samples[: audio_lib.WINDOW_SAMPLES]
        try:
            scores, embeddings = await models.sounds(row[None])
        except InvalidArgument as exc:
            raise PermanentError(str(exc)) from exc
        out = msg.AudioEvents(
            room_id=window.room_id,
            seq=window.seq,
            start_ms=window.start_ms,
            end_ms=window.end_ms,
            scores_f16=convert.f16(scores[0]),
            embedding_f16=convert.f16(embeddings[0]),
            loudness_dbfs=audio_lib.loudness_dbfs(row),
            centroid_hz=audio_lib.spectral_centroid(row),
            stream_start_unix_ms=window.stream_start_unix_ms,
            accepted_unix_ms=window.accepted_unix_ms,
            classify_ms=(time.perf_counter() - began) * 1000,
        )
        AUDIO_WINDOWS.inc()
        await bus.publish(
            cascade.subject(window.room_id, "detections.audio"),
            out.SerializeToString(),
            msg_id=derived_msg_id(delivery.msg_id, "audio"),
        )

    return StageWorker(
        "audio",
        [cascade.WORK, cascade.ALERTS],
        cascade.CONSUMERS["audio"],
        handle,
        concurrency=own.audio_concurrency,
        on_close=[triton.close],
    )


@dataclass
class RoomState:
    """One room: its evidence per live stream (a reconnected camera is a new stream whose time restarts at 0, so its
    evidence must not mix with the previous stream's), its cooldown and its rules."""

    streams: OrderedDict[int, RoomEvidence] = field(default_factory=OrderedDict)  # by stream start (wall clock)
    cooldown: Cooldown = field(default_factory=Cooldown)
    open_alert: pb.Alert | None = None  # the latest revision of the cooldown's open alert, as published
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    hydrated: bool = False
    rules: RoomRules | None = None
    rules_at: float = 0.0

    MAX_STREAMS = 3  # the current stream and the tail of the ones before it

    def evidence(self, stream_start_unix_ms: int) -> RoomEvidence:
        found = self.streams.get(stream_start_unix_ms)
        if found is None:
            found = self.streams[stream_start_unix_ms] = RoomEvidence()
            while len(self.streams) > self.MAX_STREAMS:
                self.streams.popitem(last=False)
        return found


class FusionStage:
    """Per-room evidence, rules and cooldown; one evaluation per incoming detection."""

    RULES_TTL_S = 2.0  # how long a room's rules are reused before the room table is read again

    def __init__(self, own: MonitoringSettings, bus: Bus, triton: TritonClient) -> None:
        self.own = own
        self.bus = bus
        self.triton = triton
        self.models = MonitoringModels(triton)
        self.rooms: dict[str, RoomState] = {}
        self.kv: KeyValueTable | None = None

    async def _rules(self, room_id: str, state: RoomState) -> RoomRules | None:
        if state.rules is not None and time.monotonic() - state.rules_at < self.RULES_TTL_S:
            return state.rules
        if self.kv is None:
            self.kv = await cascade.rooms(self.bus)
        raw = await self.kv.get(room_id)
        state.rules_at = time.monotonic()
        if raw is None:
            state.rules = None
            return None
        room = pb.Room.FromString(raw)
        try:
            state.rules = convert.rules_from_proto(room.rules)
        except RuleError:
            log.exception("room %s has rules that no longer validate; ignoring its evidence", room_id)
            state.rules = None
        return state.rules

    async def _hydrate(self, room_id: str, state: RoomState) -> None:
        """Rebuild what a previous incarnation knew: recent evidence and the cooldown of recent alerts."""
        now = dt.datetime.now(dt.UTC)
        horizon_s = RoomEvidence().keep_ms / 1000.0
        for message in await self.bus.read_recent(
            cascade.subject(room_id, "detections.*"), now - dt.timedelta(seconds=horizon_s)
        ):
            self._absorb(message.subject, message.data, state)
        rules = await self._rules(room_id, state)
        cooldown_s = (rules.cooldown_ms if rules else 10_000) / 1000.0 + 5.0
        past = []
        latest: dict[str, pb.Alert] = {}
        for message in await self.bus.read_recent(
            cascade.subject(room_id, "alerts"), now - dt.timedelta(seconds=cooldown_s)
        ):
            alert = pb.Alert.FromString(message.data)
            past.append((alert.alert_id, alert.revision, alert.event_unix_ms, convert.fired_rules(alert)))
            if alert.alert_id not in latest or alert.revision >= latest[alert.alert_id].revision:
                latest[alert.alert_id] = alert
        state.cooldown.restore(past)
        if state.cooldown.open is not None:
            state.open_alert = latest.get(state.cooldown.open.alert_id)
        state.hydrated = True
        if past:
            log.info("room %s: cooldown restored from %d recent alert(s)", room_id, len(past))

    def _absorb(self, subject: str, data: bytes, state: RoomState) -> tuple[int, int] | None:
        """Add one detection message to its stream's evidence (a repeat is kept once); returns (stream start, stream
        time), None for a shed marker. A repeat is still evaluated: its first evaluation may never have happened."""
        if subject.endswith(".detections.frame"):
            frame = msg.FrameDetections.FromString(data)
            if frame.shed:
                return None
            state.evidence(frame.stream_start_unix_ms).add_frame(convert.frame_obs(frame))
            return int(frame.stream_start_unix_ms), int(frame.timestamp_ms)
        events = msg.AudioEvents.FromString(data)
        state.evidence(events.stream_start_unix_ms).add_audio(convert.audio_obs(events))
        return int(events.stream_start_unix_ms), int(events.end_ms)

    async def _score(self, visual: np.ndarray, audio: np.ndarray) -> float | None:  # type: ignore[type-arg]
        try:
            scores = await self.models.fuse(visual[None], audio[None])
        except Unavailable:
            log.warning("av_fusion unavailable: deciding on rules alone (sound rules fail open)")
            return None
        return float(scores[0])

    async def handle(self, delivery: Delivery) -> None:
        room_id = cascade.room_of(delivery.subject)
        state = self.rooms.setdefault(room_id, RoomState())
        async with state.lock:
            await self.models.ensure_loaded()
            if not state.hydrated:
                await self._hydrate(room_id, state)
            absorbed = self._absorb(delivery.subject, delivery.data, state)
            rules = await self._rules(room_id, state)
            if absorbed is None or rules is None:
                return  # a shed marker, or a room that was deleted
            stream_start, at_ms = absorbed
            context = state.evidence(stream_start).context(at_ms)
            visual, audio = tokens(context)
            score = await self._score(visual, audio)
            before = copy.deepcopy(state.cooldown)  # put back if the alert is not published: the redelivery decides
            decision = decide(
                room_id=room_id,
                rules=rules,
                policy=Policy.FUSION,
                context=context,
                wall_clock_ms=stream_start + at_ms,
                model_score=score,
                labels=self.models.sound_labels,
                cooldown=state.cooldown,
            )
            if decision is None:
                return
            published = _now_ms()
            if isinstance(decision, Merge):  # one event, one alert: the open alert's next revision
                if state.open_alert is None or state.open_alert.alert_id != decision.alert_id:
                    log.warning("room %s: alert %s to merge into is gone", room_id, decision.alert_id)
                    state.cooldown = before
                    return
                alert = convert.revise(state.open_alert, decision, stream_start, published)
                rule_ids = ", ".join(c.rule_id for c in decision.findings)
                summary = f"{rule_ids} merged into {decision.alert_id} (revision {decision.revision})"
                new_source = None
            else:
                alert = convert.alert_to_proto(decision, stream_start, published)
                summary = f"{decision.rule_id}: {decision.summary}"
                new_source = decision.source.value
            try:
                await self.bus.publish(
                    cascade.subject(room_id, "alerts"), alert.SerializeToString(), msg_id=convert.revision_msg_id(alert)
                )
            except BaseException:
                state.cooldown = before
                raise
            state.open_alert = alert
            if new_source is not None:
                ALERTS.labels(new_source).inc()
                ALERT_LATENCY.observe(max(0.0, (published - alert.event_unix_ms) / 1000.0))
            else:
                MERGES.inc()
            log.info("alert in %s: %s", room_id, summary)


async def fusion_stage(settings: ServerSettings, bus: Bus) -> StageWorker:
    own = config.load(MonitoringSettings)
    triton = _triton(settings)
    stage = FusionStage(own, bus, triton)
    return StageWorker(
        "fusion",
        [cascade.WORK, cascade.ALERTS],
        cascade.CONSUMERS["fusion"],
        stage.handle,
        concurrency=own.fusion_concurrency,
        on_close=[triton.close],
    )


STAGES = {"detector": detector_stage, "audio": audio_stage, "fusion": fusion_stage}
