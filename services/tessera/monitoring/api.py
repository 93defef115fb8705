"""gRPC gateway of the monitoring service: rooms, ingest with shedding, alert watch, clip analysis, feeds.

Rooms are kept in the JetStream key-value table (shared with the fusion worker, surviving restarts). A room's live
stream (Ingest or a server-side feed; one at a time) is turned into frames and 0.982 s audio windows on the cascade;
frames are admitted by the shedding policy (``tessera.monitoring.shedding``), credits coming back as detections
appear. ``Watch`` reads the room's alerts from the durable alert stream, from where the client asks. ``AnalyzeClip``
runs the same evidence, model and rules on a clip through Triton directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import grpc
import numpy as np
from nats.aio.msg import Msg
from numpy.typing import NDArray
from prometheus_client import Counter

from tessera.common.v1 import common_pb2
from tessera.monitoring import analysis, cascade, convert, feeds
from tessera.monitoring import audio as audio_lib
from tessera.monitoring.analysis import ClipEvidence, ClipMedia, MediaError
from tessera.monitoring.audio import AudioError, AudioWindower
from tessera.monitoring.evidence import Box
from tessera.monitoring.rules import RoomRules, RuleError
from tessera.monitoring.settings import MonitoringSettings
from tessera.monitoring.shedding import FrameShedder
from tessera.monitoring.v1 import cascade_pb2 as msg
from tessera.monitoring.v1 import monitoring_pb2 as pb
from tessera.monitoring.v1 import monitoring_pb2_grpc as pb_grpc
from tessera.monitoring.vision import ImageError, check_image, decode_image, encode_jpeg, fit, raw_to_jpeg
from tessera.runtime import config
from tessera.runtime.bus import Bus, BusUnavailable
from tessera.runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from tessera.runtime.inference import TritonClient
from tessera.runtime.media import resolve_media_path
from tessera.runtime.server import ServiceRegistration, TesseraServer
from tessera.runtime.service import Capability

log = logging.getLogger("tessera.monitoring")
SERVICE_NAME = "tessera.monitoring.v1.MonitoringService"
GATEWAY_SHED = Counter("tessera_monitoring_gateway_frames_shed", "frames dropped by the gateway (oldest waiting)")
_IMAGE_ENCODINGS = {
    common_pb2.IMAGE_ENCODING_JPEG: "jpeg",
    common_pb2.IMAGE_ENCODING_PNG: "png",
    common_pb2.IMAGE_ENCODING_RAW_RGB8: "raw_rgb8",
}
_AUDIO_ENCODINGS = {common_pb2.AUDIO_ENCODING_PCM16: "pcm16", common_pb2.AUDIO_ENCODING_FLOAT32: "float32"}


def _now_ms() -> int:
    return int(time.time() * 1000)


class TritonModels:
    """The analysis seam (``analysis.Models``) over the three Triton models."""

    def __init__(self, triton: TritonClient) -> None:
        self.triton = triton
        self.object_labels: list[str] = []
        self.sound_labels: list[str] = []
        self.input_px = 320

    async def load(self) -> None:
        detector = await self.triton.contract("object_detector")
        sounds = await self.triton.contract("audio_events")
        self.object_labels = detector.parameters.get("classes", "").split("|")
        self.sound_labels = sounds.parameters.get("classes", "").split("|")
        self.input_px = int(detector.parameters.get("input_px", "320"))

    async def detect(self, images: Sequence[NDArray[np.uint8]]) -> list[tuple[Box, ...]]:
        if not images:
            return []
        batch = np.stack([fit(image, self.input_px) for image in images])
        out = await self.triton.infer("object_detector", {"IMAGES": batch})
        return [
            analysis.boxes_from_rows(
                out["BOXES"][i], out["SCORES"][i], out["CLASSES"][i], int(out["COUNT"][i][0]), self.object_labels
            )
            for i in range(len(images))
        ]

    async def sounds(self, windows: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        out = await self.triton.infer("audio_events", {"WAVEFORM": windows.astype(np.float32)})
        return out["SCORES"], out["EMBEDDINGS"]

    async def fuse(self, visual: NDArray[np.float32], audio: NDArray[np.float32]) -> NDArray[np.float32]:
        out = await self.triton.infer("av_fusion", {"VISUAL": visual, "AUDIO": audio})
        scores: NDArray[np.float32] = out["SCORE"].reshape(-1).astype(np.float32)
        return scores


@dataclass
class Session:
    """One live stream of a room (an Ingest call or a feed): its clock and audio windowing."""

    session_id: str
    room_id: str
    stream_start_unix_ms: int
    windower: AudioWindower | None = None
    frames_accepted: int = 0
    frames_shed: int = 0
    audio_ms: float = 0.0


@dataclass
class LiveRoom:
    """What this gateway knows of a room's live traffic."""

    room_id: str
    shedder: FrameShedder[msg.FrameMessage]
    frame_seq: int = 0
    audio_seq: int = 0
    stats: pb.RoomStats = field(default_factory=pb.RoomStats)
    session: Session | None = None
    publish_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    feed: pb.Feed | None = None
    feed_stop: threading.Event | None = None
    feed_task: asyncio.Future[None] | None = None


class MonitoringServicer(pb_grpc.MonitoringServiceServicer):
    def __init__(self, own: MonitoringSettings, settings: config.ServerSettings, bus: Bus, triton: TritonClient):
        self.own = own
        self.settings = settings
        self.bus = bus
        self.triton = triton
        self.models = TritonModels(triton)
        self.kv: Any = None
        self.rooms: dict[str, pb.Room] = {}
        self.live: dict[str, LiveRoom] = {}
        self.ready = False
        self._tasks: list[asyncio.Future[Any]] = []
        self._subscriptions: list[Any] = []
        self._clip_cache: OrderedDict[str, ClipEvidence] = OrderedDict()

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self, server: TesseraServer) -> None:
        await server.set_serving(False, SERVICE_NAME)
        await server.set_serving(False, "")
        await self.bus.ensure(cascade.WORK)
        await self.bus.ensure(cascade.ALERTS)
        self.kv = await cascade.rooms(self.bus)
        for key in await self._keys():
            raw = await cascade.get_room(self.kv, key)
            if raw:
                self.rooms[key] = pb.Room.FromString(raw)
        self._subscriptions.append(
            await cascade.subscribe(self.bus, f"{cascade.PREFIX}.*.detections.frame", self._on_detection)
        )
        self._tasks.append(asyncio.ensure_future(self._tick()))

        async def ready() -> None:
            try:
                await self.triton.wait_ready(list(cascade.MODELS), self.own.models_ready_timeout_s)
                await self.models.load()
            except Exception:
                log.exception("monitoring models never became ready; staying NOT_SERVING")
                return
            self.ready = True
            if not server.drained:
                await server.set_serving(True, SERVICE_NAME)
                await server.set_serving(True, "")

        self._tasks.append(asyncio.ensure_future(ready()))

    async def _keys(self) -> list[str]:
        try:
            keys: list[str] = await self.kv.keys()
        except Exception:  # nats-py raises NoKeysError on an empty bucket
            return []
        return keys

    async def close(self) -> None:
        for live in self.live.values():
            if live.feed_stop is not None:
                live.feed_stop.set()
        for task in self._tasks:
            task.cancel()
        for sub in self._subscriptions:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _require_ready(self) -> None:
        if not self.ready:
            raise Unavailable("the monitoring models are not ready yet; retry shortly")

    # -- rooms -----------------------------------------------------------------------------------------------
    def _rules(self, rules: pb.RoomRules, field: str = "rules") -> RoomRules:
        try:
            return convert.rules_from_proto(
                rules, field, frozenset(self.models.object_labels), frozenset(self.models.sound_labels)
            )
        except RuleError as exc:
            raise InvalidArgument(str(exc), field=exc.field) from None

    async def _room(self, room_id: str, field: str = "room_id") -> pb.Room:
        if not room_id:
            raise InvalidArgument("must name a room", field=field)
        room = self.rooms.get(room_id)
        if room is None:
            raw = await cascade.get_room(self.kv, room_id)
            if raw is None:
                raise NotFound(f"no room {room_id!r}", field=field)
            room = self.rooms[room_id] = pb.Room.FromString(raw)
        return room

    def _describe(self, room: pb.Room) -> pb.Room:
        out = pb.Room()
        out.CopyFrom(room)
        live = self.live.get(room.room_id)
        if live is not None:
            out.stats.CopyFrom(live.stats)
            if live.feed is not None:
                out.feed.CopyFrom(live.feed)
        return out

    async def _store(self, room: pb.Room) -> None:
        await self.kv.put(room.room_id, room.SerializeToString())
        self.rooms[room.room_id] = room

    async def CreateRoom(
        self, request: pb.CreateRoomRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CreateRoomResponse:
        self._require_ready()
        room_id = request.room_id or uuid.uuid4().hex[:12]
        if not cascade.ROOM_ID.match(room_id):
            raise InvalidArgument("must match [a-z0-9][a-z0-9-]{0,63}", field="room_id")
        if room_id in self.rooms or await cascade.get_room(self.kv, room_id) is not None:
            raise InvalidArgument(f"room {room_id!r} exists", field="room_id")
        if len(self.rooms) >= self.own.max_rooms:
            raise ResourceExhausted(f"at most {self.own.max_rooms} rooms")
        rules = self._rules(request.rules)
        now = _now_ms()
        room = pb.Room(
            room_id=room_id,
            display_name=request.display_name[:200],
            rules=convert.rules_to_proto(rules),
            create_time_ms=now,
            update_time_ms=now,
        )
        await self._store(room)
        return pb.CreateRoomResponse(room=self._describe(room))

    async def GetRoom(
        self, request: pb.GetRoomRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetRoomResponse:
        return pb.GetRoomResponse(room=self._describe(await self._room(request.room_id)))

    async def UpdateRoom(
        self, request: pb.UpdateRoomRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UpdateRoomResponse:
        self._require_ready()
        room = await self._room(request.room_id)
        rules = self._rules(request.rules)
        updated = pb.Room()
        updated.CopyFrom(room)
        updated.display_name = request.display_name[:200] or room.display_name
        updated.rules.CopyFrom(convert.rules_to_proto(rules))
        updated.update_time_ms = _now_ms()
        await self._store(updated)
        return pb.UpdateRoomResponse(room=self._describe(updated))

    async def DeleteRoom(
        self, request: pb.DeleteRoomRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DeleteRoomResponse:
        await self._room(request.room_id)
        live = self.live.get(request.room_id)
        if live is not None:
            await self._stop_feed(live)
        await self.kv.delete(request.room_id)
        self.rooms.pop(request.room_id, None)
        self.live.pop(request.room_id, None)
        return pb.DeleteRoomResponse()

    # -- live traffic ----------------------------------------------------------------------------------------
    def _live(self, room_id: str) -> LiveRoom:
        live = self.live.get(room_id)
        if live is None:
            # Sequence numbers start from the clock so they keep growing across gateway restarts (the fusion
            # worker's evidence de-duplicates by them).
            first = _now_ms() * 1000
            live = self.live[room_id] = LiveRoom(
                room_id,
                FrameShedder(self.own.max_in_flight_frames, self.own.max_waiting_frames, self.own.credit_timeout_s),
                frame_seq=first,
                audio_seq=first,
            )
        return live

    def _open_session(self, room_id: str, stream_start_unix_ms: int, field: str = "room_id") -> Session:
        live = self._live(room_id)
        if live.session is not None:
            raise FailedPrecondition(
                f"room {room_id!r} already has a live stream (an Ingest call or a feed); one at a time", field=field
            )
        if stream_start_unix_ms < 0:
            raise InvalidArgument("must be >= 0", field="stream_start_unix_ms")
        session = Session(uuid.uuid4().hex[:10], room_id, stream_start_unix_ms or _now_ms())
        live.session = session
        return session

    def _close_session(self, session: Session) -> None:
        live = self.live.get(session.room_id)
        if live is not None and live.session is session:
            live.session = None

    async def _accept_frame(self, session: Session, image: common_pb2.Image, field: str) -> None:
        encoding = _IMAGE_ENCODINGS.get(image.encoding, "")
        if len(image.data) > self.own.max_frame_bytes:
            raise ResourceExhausted(f"frame larger than {self.own.max_frame_bytes} bytes", field=f"{field}.data")
        if image.timestamp_ms < 0:
            raise InvalidArgument("must be >= 0", field=f"{field}.timestamp_ms")
        try:
            check_image(image.data, encoding, image.width_px, image.height_px)
        except ImageError as exc:
            raise InvalidArgument(str(exc), field=f"{field}.{exc.field}") from None
        data = image.data
        if encoding == "raw_rgb8":
            data = await asyncio.to_thread(raw_to_jpeg, image.data, image.width_px, image.height_px)
        elif len(data) > self.own.frame_publish_max_bytes:
            try:
                rgb = await asyncio.to_thread(decode_image, data, 1280)
            except ImageError as exc:
                raise InvalidArgument(str(exc), field=f"{field}.data") from None
            data = await asyncio.to_thread(encode_jpeg, rgb, 85)
        live = self._live(session.room_id)
        live.frame_seq += 1
        session.frames_accepted += 1
        live.stats.frames_accepted += 1
        frame = msg.FrameMessage(
            room_id=session.room_id,
            seq=live.frame_seq,
            timestamp_ms=image.timestamp_ms,
            image=data,
            stream_start_unix_ms=session.stream_start_unix_ms,
            accepted_unix_ms=_now_ms(),
            shed_before=live.stats.frames_shed,
        )
        released, dropped = live.shedder.offer(live.frame_seq, frame, time.monotonic())
        if dropped:
            session.frames_shed += len(dropped)
            live.stats.frames_shed += len(dropped)
            GATEWAY_SHED.inc(len(dropped))
        await self._publish_frames(live, released)

    async def _publish_frames(self, live: LiveRoom, frames: list[tuple[int, msg.FrameMessage]]) -> None:
        if not frames:
            return
        async with live.publish_lock:
            for seq, frame in frames:
                await self.bus.publish(
                    cascade.subject(live.room_id, "frames"),
                    frame.SerializeToString(),
                    msg_id=f"{live.room_id}.f{seq}.{frame.accepted_unix_ms}",
                )

    async def _accept_audio(self, session: Session, chunk: common_pb2.AudioChunk, field: str) -> None:
        try:
            samples = audio_lib.decode_pcm(
                chunk.data, _AUDIO_ENCODINGS.get(chunk.encoding, ""), chunk.sample_rate_hz, chunk.channels
            )
        except AudioError as exc:
            raise InvalidArgument(str(exc), field=f"{field}.{exc.field}") from None
        if chunk.start_ms < 0:
            raise InvalidArgument("must be >= 0", field=f"{field}.start_ms")
        if session.windower is None:
            session.windower = AudioWindower(chunk.sample_rate_hz, self.own.audio_hop_ms)
        elif session.windower.rate != chunk.sample_rate_hz:
            raise InvalidArgument("must not change within a stream", field=f"{field}.sample_rate_hz")
        live = self._live(session.room_id)
        windows = session.windower.push(samples, int(chunk.start_ms))
        added = len(samples) * 1000.0 / chunk.sample_rate_hz
        session.audio_ms += added
        live.stats.audio_ms_accepted += round(added)
        for window in windows:
            live.audio_seq += 1
            live.stats.audio_windows_published += 1
            message = msg.AudioWindowMessage(
                room_id=session.room_id,
                seq=live.audio_seq,
                start_ms=window.start_ms,
                end_ms=window.end_ms,
                pcm16=audio_lib.to_pcm16(window.samples),
                sample_rate_hz=window.rate,
                stream_start_unix_ms=session.stream_start_unix_ms,
                accepted_unix_ms=_now_ms(),
            )
            await self.bus.publish(
                cascade.subject(session.room_id, "audio"),
                message.SerializeToString(),
                msg_id=f"{session.room_id}.{session.session_id}.a{window.end_ms}",
            )

    async def _on_detection(self, message: Msg) -> None:
        """A detection (or shed marker) came back: its frame's credit returns and waiting frames may go."""
        live = self.live.get(cascade.room_of(message.subject))
        if live is None:
            return
        try:
            detections = msg.FrameDetections.FromString(message.data)
        except Exception:
            return
        if detections.shed:
            live.stats.frames_shed_by_detector += 1
        else:
            live.stats.frames_analyzed += 1
        await self._publish_frames(live, live.shedder.done(detections.seq, time.monotonic()))

    async def _tick(self) -> None:
        """Reclaims timed-out credits twice a second, so a lost result cannot stall a room."""
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for live in list(self.live.values()):
                with contextlib.suppress(BusUnavailable):
                    await self._publish_frames(live, live.shedder.poll(now))

    async def Ingest(
        self, request_iterator: AsyncIterator[pb.IngestRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.IngestResponse:
        self._require_ready()
        session: Session | None = None
        try:
            async for request in request_iterator:
                if session is None:
                    room = await self._room(request.room_id)
                    session = self._open_session(room.room_id, request.stream_start_unix_ms)
                elif request.room_id and request.room_id != session.room_id:
                    raise InvalidArgument("one Ingest stream carries one room", field="room_id")
                kind = request.data.WhichOneof("data")
                if kind == "frame":
                    await self._accept_frame(session, request.data.frame, "data.frame")
                elif kind == "audio":
                    await self._accept_audio(session, request.data.audio, "data.audio")
                else:
                    raise InvalidArgument("must hold a frame or audio", field="data")
        finally:
            if session is not None:
                self._close_session(session)
        if session is None:
            raise InvalidArgument("the stream was empty: the first message names the room", field="room_id")
        return pb.IngestResponse(
            frames_accepted=session.frames_accepted,
            frames_shed=session.frames_shed,
            audio_ms_accepted=round(session.audio_ms),
        )

    # -- alerts ----------------------------------------------------------------------------------------------
    async def Watch(
        self, request: pb.WatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.WatchResponse]:
        room = await self._room(request.room_id)
        start = request.WhichOneof("start")
        if start == "since_unix_ms" and request.since_unix_ms <= 0:
            raise InvalidArgument("must be > 0", field="since_unix_ms")
        queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=256)

        async def on_alert(message: Msg) -> None:
            await queue.put(message)  # a slow client holds back its own subscription (flow control), loses nothing

        sub = await cascade.subscribe(
            self.bus,
            cascade.subject(room.room_id, "alerts"),
            on_alert,
            after_sequence=request.after_sequence if start == "after_sequence" else None,
            since=dt.datetime.fromtimestamp(request.since_unix_ms / 1000, dt.UTC) if start == "since_unix_ms" else None,
            replay_all=start == "replay_all" and request.replay_all,
        )
        try:
            while True:
                message = await queue.get()
                alert = pb.Alert.FromString(message.data)
                alert.sequence = message.metadata.sequence.stream
                yield pb.WatchResponse(alert=alert)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    # -- clips -----------------------------------------------------------------------------------------------
    def _source(self, source: common_pb2.MediaSource, field: str) -> tuple[Path | bytes, str]:
        kind = source.WhichOneof("source")
        if kind == "uri":
            path = resolve_media_path(source.uri, self.settings.media_roots, field=f"{field}.uri")
            stat = path.stat()
            return path, f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
        if kind == "inline_data":
            if len(source.inline_data) > self.own.inline_max_bytes:
                raise ResourceExhausted(
                    f"inline media larger than {self.own.inline_max_bytes} bytes; pass a uri",
                    field=f"{field}.inline_data",
                )
            if not source.inline_data:
                raise InvalidArgument("must not be empty", field=f"{field}.inline_data")
            return source.inline_data, hashlib.blake2b(source.inline_data, digest_size=16).hexdigest()
        raise InvalidArgument("give a uri or inline_data", field=field)

    async def AnalyzeClip(
        self, request: pb.AnalyzeClipRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AnalyzeClipResponse:
        self._require_ready()
        began = time.perf_counter()
        policy = convert.POLICIES.get(request.policy)
        if policy is None:
            raise InvalidArgument("unknown policy", field="policy")
        fps = request.sampling_fps or 5.0
        if not 0 < fps <= self.own.max_sampling_fps:
            raise InvalidArgument(f"must be in (0, {self.own.max_sampling_fps:g}]", field="sampling_fps")
        if request.HasField("rules"):
            rules = self._rules(request.rules)
        elif request.room_id:
            rules = self._rules((await self._room(request.room_id)).rules, "room_id")
        else:
            raise InvalidArgument("give rules or a room_id whose rules apply", field="rules")
        if request.start_unix_ms < 0:
            raise InvalidArgument("must be >= 0", field="start_unix_ms")
        has_video, has_audio = request.HasField("video"), request.HasField("audio")
        if not has_video and not has_audio:
            raise InvalidArgument("give a video, an audio file, or both", field="video")
        video = self._source(request.video, "video") if has_video else None
        audio = self._source(request.audio, "audio") if has_audio else None
        key = f"{video[1] if video else ''}|{audio[1] if audio else ''}|{fps:g}"
        evidence = self._clip_cache.get(key)
        if evidence is None:
            media = await asyncio.to_thread(self._decode, video, audio, fps)
            evidence = await analysis.gather_evidence(self.models, media)
            self._remember(key, evidence)
        else:
            self._clip_cache.move_to_end(key)
        if policy.uses_model and evidence.scores is None:
            evidence.scores = await analysis.fuse_scores(self.models, evidence.contexts)
        start_unix_ms = request.start_unix_ms or _now_ms()
        room_id = request.room_id or "clip"
        decisions = analysis.replay(
            evidence,
            rules=rules,
            policy=policy,
            room_id=room_id,
            start_unix_ms=start_unix_ms,
            sound_labels=self.models.sound_labels,
        )
        published = _now_ms()
        reply = pb.AnalyzeClipResponse(
            duration_ms=evidence.duration_ms,
            frames_analyzed=len(evidence.frames),
            audio_windows_analyzed=len(evidence.audio),
            frames=[
                pb.FrameResult(timestamp_ms=f.timestamp_ms, detections=[convert.box_to_proto(b) for b in f.boxes])
                for f in evidence.frames
            ],
            alerts=[convert.alert_to_proto(d, start_unix_ms, published) for d in decisions],
            policy=convert.POLICY_PROTO[policy],
        )
        labels = self.models.sound_labels
        for window in evidence.audio:
            top = int(np.argmax(window.scores))
            if window.scores[top] >= 0.3:
                reply.sound_events.append(
                    pb.SoundEvent(
                        class_name=labels[top],
                        score=float(window.scores[top]),
                        span=common_pb2.TimeRange(start_ms=window.start_ms, end_ms=window.end_ms),
                    )
                )
        if policy.uses_model and evidence.scores is not None:
            reply.scores.extend(
                pb.ScorePoint(time_ms=c.at_ms, score=float(s))
                for c, s in zip(evidence.contexts, evidence.scores, strict=True)
            )
        reply.analysis_ms = (time.perf_counter() - began) * 1000
        return reply

    def _decode(
        self, video: tuple[Path | bytes, str] | None, audio: tuple[Path | bytes, str] | None, fps: float
    ) -> ClipMedia:
        limit = self.own.clip_max_duration_s
        try:
            frames: list[tuple[int, NDArray[np.uint8]]] = []
            track: NDArray[np.float32] | None = None
            duration_ms = 0
            if video is not None:
                frames, track, duration_ms = analysis.decode_video(video[0], fps, max_duration_s=limit, field="video")
            if audio is not None:
                track = analysis.decode_audio(audio[0], max_duration_s=limit, field="audio")
            if track is not None:
                duration_ms = max(duration_ms, len(track) * 1000 // audio_lib.MODEL_RATE)
        except MediaError as exc:
            raise InvalidArgument(str(exc), field=exc.field) from None
        return ClipMedia(frames, track, duration_ms)

    def _remember(self, key: str, evidence: ClipEvidence) -> None:
        if self.own.clip_cache_entries <= 0:
            return
        self._clip_cache[key] = evidence
        while len(self._clip_cache) > self.own.clip_cache_entries:
            self._clip_cache.popitem(last=False)

    # -- feeds -----------------------------------------------------------------------------------------------
    def _feed_source(self, uri: str) -> str:
        scheme = urlparse(uri).scheme
        allowed = {s.strip() for s in self.own.feed_schemes.split(",") if s.strip()}
        if scheme in ("", "file"):
            return str(resolve_media_path(uri, self.settings.media_roots, field="uri"))
        if scheme in allowed:
            if len(uri) > 4096 or any(c in uri for c in "\x00\n\r"):
                raise InvalidArgument("not a valid URI", field="uri")
            return uri
        raise PermissionDenied(
            f"URI scheme {scheme!r} is not allowed (allowed: file, {', '.join(sorted(allowed))})", field="uri"
        )

    async def StartFeed(
        self, request: pb.StartFeedRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.StartFeedResponse:
        self._require_ready()
        room = await self._room(request.room_id)
        if not request.uri:
            raise InvalidArgument("must name a file or rtsp:// stream", field="uri")
        source = self._feed_source(request.uri)
        fps = request.sampling_fps or 5.0
        if not 0 < fps <= self.own.max_sampling_fps:
            raise InvalidArgument(f"must be in (0, {self.own.max_sampling_fps:g}]", field="sampling_fps")
        running = sum(
            1 for live in self.live.values() if live.feed is not None and live.feed.state == pb.FEED_STATE_RUNNING
        )
        if running >= self.own.max_feeds:
            raise ResourceExhausted(f"at most {self.own.max_feeds} feeds per gateway")
        session = self._open_session(room.room_id, 0)
        live = self._live(room.room_id)
        live.feed = pb.Feed(room_id=room.room_id, uri=request.uri, state=pb.FEED_STATE_RUNNING)
        live.feed_stop = threading.Event()
        live.feed_task = asyncio.ensure_future(self._run_feed(live, session, source, fps, request.loop))
        return pb.StartFeedResponse(feed=pb.Feed(room_id=room.room_id, uri=request.uri, state=pb.FEED_STATE_RUNNING))

    async def _run_feed(self, live: LiveRoom, session: Session, source: str, fps: float, loop_file: bool) -> None:
        progress = feeds.FeedProgress()
        assert live.feed is not None and live.feed_stop is not None
        feed, stop = live.feed, live.feed_stop

        async def on_frame(timestamp_ms: int, jpeg: bytes) -> None:
            await self._accept_frame(
                session,
                common_pb2.Image(data=jpeg, encoding=common_pb2.IMAGE_ENCODING_JPEG, timestamp_ms=timestamp_ms),
                "uri",
            )
            feed.frames_sent += 1

        async def on_audio(start_ms: int, pcm: bytes) -> None:
            chunk = common_pb2.AudioChunk(
                data=pcm,
                encoding=common_pb2.AUDIO_ENCODING_PCM16,
                sample_rate_hz=audio_lib.MODEL_RATE,
                channels=1,
                start_ms=start_ms,
            )
            await self._accept_audio(session, chunk, "uri")
            feed.audio_ms_sent = round(session.audio_ms)

        loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(feeds.pull, source, fps, loop_file, on_frame, on_audio, loop, stop, progress)
        except Exception as exc:  # a broken pipeline stops the feed, visibly
            progress.error = progress.error or f"{type(exc).__name__}: {exc}"[:300]
        finally:
            self._close_session(session)
            feed.state = pb.FEED_STATE_FAILED if progress.error else pb.FEED_STATE_STOPPED
            feed.error = progress.error
            if progress.error:
                log.warning("feed of %s failed: %s", live.room_id, progress.error)

    async def _stop_feed(self, live: LiveRoom) -> None:
        if live.feed_stop is not None:
            live.feed_stop.set()
        if live.feed_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(live.feed_task), 15)

    async def StopFeed(
        self, request: pb.StopFeedRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.StopFeedResponse:
        room = await self._room(request.room_id)
        live = self.live.get(room.room_id)
        if live is None or live.feed is None:
            raise FailedPrecondition(f"room {room.room_id!r} has no feed", field="room_id")
        await self._stop_feed(live)
        return pb.StopFeedResponse(feed=live.feed)


async def create(settings: config.ServerSettings) -> Capability:
    own = config.load(MonitoringSettings)
    bus = await Bus.connect(settings.nats_url, "monitoring-gateway")
    triton = TritonClient(settings.triton_url, default_timeout_s=settings.triton_timeout_s)
    servicer = MonitoringServicer(own, settings, bus, triton)
    return Capability(
        name="monitoring",
        services=[ServiceRegistration(SERVICE_NAME, pb_grpc.add_MonitoringServiceServicer_to_server, servicer)],
        on_start=[servicer.start],
        on_close=[servicer.close, bus.close, triton.close],
    )
