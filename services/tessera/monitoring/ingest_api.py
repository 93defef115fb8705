"""Live traffic of the monitoring gateway: Ingest streams and server-side feeds onto the cascade, alert Watch.

A room has one live stream at a time (an Ingest call or a feed). It is turned into frames and 0.982 s audio windows
on the cascade; frames are admitted by the shedding policy (``tessera.monitoring.shedding``), credits coming back as
detections appear. ``watch`` reads the room's alerts from the durable alert stream, from where the client asks.

An Ingest stream that goes quiet (no first message, or nothing more for the idle timeout) is ended with
DEADLINE_EXCEEDED, so it cannot hold its room's live slot. A frame the gateway cannot take is refused on its own
(``FrameRejected``): counted, listed in the response, and the stream goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from prometheus_client import Counter

from tessera.common.v1 import common_pb2
from tessera.monitoring import cascade, feeds
from tessera.monitoring.rooms_api import Rooms, now_ms
from tessera.monitoring.settings import MonitoringSettings
from tessera.monitoring.shedding import FrameShedder
from tessera.monitoring.v1 import cascade_pb2 as msg
from tessera.monitoring.v1 import monitoring_pb2 as pb
from tessera.monitoring.vision import (
    ImageError,
    TooManyPixels,
    check_image,
    decode_image,
    encode_jpeg,
    raw_to_jpeg,
)
from tessera.runtime import audio as audio_lib
from tessera.runtime import config
from tessera.runtime.audio import AudioError, AudioWindower
from tessera.runtime.bus import Bus, BusUnavailable, Received, Subscription
from tessera.runtime.echo import bounded, shown
from tessera.runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
)
from tessera.runtime.media import resolve_media_path
from tessera.runtime.streams import next_or_idle

log = logging.getLogger("tessera.monitoring")
GATEWAY_SHED = Counter("tessera_monitoring_gateway_frames_shed", "frames dropped by the gateway (oldest waiting)")
FRAMES_REJECTED = Counter(
    "tessera_monitoring_gateway_frames_rejected", "frames refused one by one (their streams went on)", ["reason"]
)
REJECTION_LABELS = {
    pb.FRAME_REJECTION_REASON_INVALID: "invalid",
    pb.FRAME_REJECTION_REASON_TOO_LARGE: "too_large",
    pb.FRAME_REJECTION_REASON_TOO_MANY_PIXELS: "too_many_pixels",
}
MAX_LISTED_REJECTIONS = 16  # IngestResponse.rejected_frames
_REJECTION_CHARS = 200
# google.rpc.ErrorInfo reasons of an Ingest stream ended for silence (DEADLINE_EXCEEDED).
INGEST_IDLE = "INGEST_IDLE"
INGEST_FIRST_MESSAGE_TIMEOUT = "INGEST_FIRST_MESSAGE_TIMEOUT"
# Room for the rest of an IngestRequest around a frame's bytes: a frame at TESSERA_MONITORING_MAX_FRAME_BYTES must
# reach the gateway's own check (refused on its own) rather than gRPC's message limit (which ends the stream).
FRAME_ENVELOPE_BYTES = 64 * 1024
IMAGE_ENCODINGS = {
    common_pb2.IMAGE_ENCODING_JPEG: "jpeg",
    common_pb2.IMAGE_ENCODING_PNG: "png",
    common_pb2.IMAGE_ENCODING_RAW_RGB8: "raw_rgb8",
}
_AUDIO_ENCODINGS = {common_pb2.AUDIO_ENCODING_PCM16: "pcm16", common_pb2.AUDIO_ENCODING_FLOAT32: "float32"}
_WATCH_QUEUE = 256  # alerts buffered per Watch call before its subscription is held back


class FrameRejected(Exception):
    """A frame the gateway cannot take. It is refused on its own: the stream it came on goes on."""

    def __init__(self, reason: pb.FrameRejectionReason.ValueType, field: str, message: str) -> None:
        message = bounded(message, _REJECTION_CHARS)
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.message = message


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
    frames_rejected: int = 0
    rejected: list[pb.RejectedFrame] = field(default_factory=list)  # the first MAX_LISTED_REJECTIONS


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


class LiveIngest:
    """Every room's live stream on this gateway; ``start`` it to receive the detector's credits."""

    def __init__(self, own: MonitoringSettings, settings: config.ServerSettings, bus: Bus, rooms: Rooms) -> None:
        if own.max_frame_bytes > settings.max_receive_message_bytes - FRAME_ENVELOPE_BYTES:
            raise config.ConfigError(
                f"TESSERA_MONITORING_MAX_FRAME_BYTES ({own.max_frame_bytes}) must be at most "
                f"TESSERA_MAX_RECEIVE_MESSAGE_BYTES - {FRAME_ENVELOPE_BYTES} "
                f"({settings.max_receive_message_bytes - FRAME_ENVELOPE_BYTES}): a frame over the gRPC limit ends "
                "the whole Ingest stream instead of being refused on its own"
            )
        self.own = own
        self.settings = settings
        self.bus = bus
        self.rooms = rooms
        self.live: dict[str, LiveRoom] = {}
        self._tasks: list[asyncio.Future[Any]] = []
        self._subscriptions: list[Subscription] = []

    async def start(self) -> None:
        self._subscriptions.append(await self.bus.watch(f"{cascade.PREFIX}.*.detections.frame", self._on_detection))
        self._tasks.append(asyncio.ensure_future(self._tick()))

    async def close(self) -> None:
        for live in self.live.values():
            if live.feed_stop is not None:
                live.feed_stop.set()
        for task in self._tasks:
            task.cancel()
        for sub in self._subscriptions:
            await sub.unsubscribe()

    def describe(self, room: pb.Room) -> pb.Room:
        """The stored room with this gateway's live stats and feed."""
        out = pb.Room()
        out.CopyFrom(room)
        live = self.live.get(room.room_id)
        if live is not None:
            out.stats.CopyFrom(live.stats)
            if live.feed is not None:
                out.feed.CopyFrom(live.feed)
        return out

    async def forget(self, room_id: str) -> None:
        """A deleted room: stop its feed and drop its live state."""
        live = self.live.get(room_id)
        if live is not None:
            await self._stop_feed(live)
        self.live.pop(room_id, None)

    # -- sessions and publishing ----------------------------------------------------------------------------
    def _live(self, room_id: str) -> LiveRoom:
        live = self.live.get(room_id)
        if live is None:
            # Sequence numbers start from the clock so they keep growing across gateway restarts (the fusion
            # worker's evidence de-duplicates by them).
            first = now_ms() * 1000
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
                f"room {shown(room_id)} already has a live stream (an Ingest call or a feed); one at a time",
                field=field,
            )
        if stream_start_unix_ms < 0:
            raise InvalidArgument("must be >= 0", field="stream_start_unix_ms")
        session = Session(uuid.uuid4().hex[:10], room_id, stream_start_unix_ms or now_ms())
        live.session = session
        return session

    def _close_session(self, session: Session) -> None:
        live = self.live.get(session.room_id)
        if live is not None and live.session is session:
            live.session = None

    async def _frame_bytes(self, image: common_pb2.Image, field: str) -> bytes:
        """The JPEG or PNG bytes to publish for a frame, or ``FrameRejected``. The image is never decoded before
        its header's size is checked (``check_image``)."""
        encoding = IMAGE_ENCODINGS.get(image.encoding, "")
        if len(image.data) > self.own.max_frame_bytes:
            raise FrameRejected(
                pb.FRAME_REJECTION_REASON_TOO_LARGE,
                f"{field}.data",
                f"frame of {len(image.data)} bytes: at most {self.own.max_frame_bytes} bytes",
            )
        if image.timestamp_ms < 0:
            raise FrameRejected(pb.FRAME_REJECTION_REASON_INVALID, f"{field}.timestamp_ms", "must be >= 0")
        try:
            check_image(image.data, encoding, image.width_px, image.height_px)
            if encoding == "raw_rgb8":
                return await asyncio.to_thread(raw_to_jpeg, image.data, image.width_px, image.height_px)
            if len(image.data) > self.own.frame_publish_max_bytes:
                rgb = await asyncio.to_thread(decode_image, image.data, 1280)
                return await asyncio.to_thread(encode_jpeg, rgb, 85)
        except ImageError as exc:
            reason = (
                pb.FRAME_REJECTION_REASON_TOO_MANY_PIXELS
                if isinstance(exc, TooManyPixels)
                else pb.FRAME_REJECTION_REASON_INVALID
            )
            raise FrameRejected(reason, f"{field}.{exc.field}", str(exc)) from None
        return image.data

    async def _accept_frame(self, session: Session, image: common_pb2.Image, field: str) -> None:
        """Publish a frame (subject to shedding), or raise ``FrameRejected`` having counted it."""
        try:
            data = await self._frame_bytes(image, field)
        except FrameRejected as rejected:
            session.frames_rejected += 1
            self._live(session.room_id).stats.frames_rejected += 1
            FRAMES_REJECTED.labels(REJECTION_LABELS[rejected.reason]).inc()
            raise
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
            accepted_unix_ms=now_ms(),
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
                accepted_unix_ms=now_ms(),
            )
            await self.bus.publish(
                cascade.subject(session.room_id, "audio"),
                message.SerializeToString(),
                msg_id=f"{session.room_id}.{session.session_id}.a{window.end_ms}",
            )

    async def _on_detection(self, message: Received) -> None:
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

    # -- RPCs -----------------------------------------------------------------------------------------------
    async def _next_message(
        self, messages: AsyncIterator[pb.IngestRequest], session: Session | None
    ) -> pb.IngestRequest | None:
        """The stream's next message, None at its end; ``DeadlineExceeded`` when the client stays quiet too long
        (the read is abandoned and the call ends with that status, so the room's live slot is freed at once)."""
        if session is None:
            timeout_s = self.own.ingest_first_message_timeout_s
            reason, quiet = INGEST_FIRST_MESSAGE_TIMEOUT, "no first message (naming the room)"
        else:
            timeout_s = self.own.ingest_idle_timeout_s
            reason, quiet = INGEST_IDLE, f"room {shown(session.room_id)}: nothing"
        return await next_or_idle(messages, timeout_s, quiet, reason)

    @staticmethod
    def _note_rejection(session: Session, index: int, image: common_pb2.Image, rejected: FrameRejected) -> None:
        if session.frames_rejected == 1:
            log.info(
                "ingest of room %s: frame #%d refused (%s: %s); the stream goes on",
                session.room_id,
                index,
                rejected.field,
                rejected.message,
            )
        if len(session.rejected) < MAX_LISTED_REJECTIONS:
            session.rejected.append(
                pb.RejectedFrame(
                    message_index=index,
                    timestamp_ms=image.timestamp_ms,
                    field=rejected.field,
                    reason=rejected.reason,
                    description=rejected.message,
                )
            )

    async def ingest(self, request_iterator: AsyncIterator[pb.IngestRequest]) -> pb.IngestResponse:
        session: Session | None = None
        messages = aiter(request_iterator)
        index = -1
        try:
            while (request := await self._next_message(messages, session)) is not None:
                index += 1
                if session is None:
                    room = await self.rooms.get(request.room_id)
                    session = self._open_session(room.room_id, request.stream_start_unix_ms)
                elif request.room_id and request.room_id != session.room_id:
                    raise InvalidArgument("one Ingest stream carries one room", field="room_id")
                kind = request.data.WhichOneof("data")
                if kind == "frame":
                    try:
                        await self._accept_frame(session, request.data.frame, "data.frame")
                    except FrameRejected as rejected:
                        self._note_rejection(session, index, request.data.frame, rejected)
                elif kind == "audio":
                    await self._accept_audio(session, request.data.audio, "data.audio")
                else:
                    raise InvalidArgument("must hold a frame or audio", field="data")
        finally:
            if session is not None:
                self._close_session(session)
                if session.frames_rejected:
                    log.info(
                        "ingest of room %s ended: %d frames accepted, %d refused",
                        session.room_id,
                        session.frames_accepted,
                        session.frames_rejected,
                    )
        if session is None:
            raise InvalidArgument("the stream was empty: the first message names the room", field="room_id")
        return pb.IngestResponse(
            frames_accepted=session.frames_accepted,
            frames_shed=session.frames_shed,
            audio_ms_accepted=round(session.audio_ms),
            frames_rejected=session.frames_rejected,
            rejected_frames=session.rejected,
        )

    async def watch(self, request: pb.WatchRequest) -> AsyncIterator[pb.WatchResponse]:
        room = await self.rooms.get(request.room_id)
        start = request.WhichOneof("start")
        if start == "since_unix_ms" and request.since_unix_ms <= 0:
            raise InvalidArgument("must be > 0", field="since_unix_ms")
        queue: asyncio.Queue[Received] = asyncio.Queue(maxsize=_WATCH_QUEUE)

        async def on_alert(message: Received) -> None:
            await queue.put(message)  # a slow client holds back its own subscription (flow control), loses nothing

        sub = await self.bus.watch(
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
                alert.sequence = message.stream_seq
                yield pb.WatchResponse(alert=alert)
        finally:
            await sub.unsubscribe()

    # -- feeds ----------------------------------------------------------------------------------------------
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
            f"URI scheme {shown(scheme)} is not allowed (allowed: file, {', '.join(sorted(allowed))})", field="uri"
        )

    async def start_feed(self, request: pb.StartFeedRequest) -> pb.Feed:
        room = await self.rooms.get(request.room_id)
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
        return pb.Feed(room_id=room.room_id, uri=request.uri, state=pb.FEED_STATE_RUNNING)

    async def _run_feed(self, live: LiveRoom, session: Session, source: str, fps: float, loop_file: bool) -> None:
        progress = feeds.FeedProgress()
        assert live.feed is not None and live.feed_stop is not None
        feed, stop = live.feed, live.feed_stop

        async def on_frame(timestamp_ms: int, jpeg: bytes) -> None:
            try:
                await self._accept_frame(
                    session,
                    common_pb2.Image(data=jpeg, encoding=common_pb2.IMAGE_ENCODING_JPEG, timestamp_ms=timestamp_ms),
                    "uri",
                )
            except FrameRejected as rejected:  # counted in the room's stats; the feed goes on
                if session.frames_rejected == 1:
                    log.warning("feed of %s: frame at %d ms refused: %s", live.room_id, timestamp_ms, rejected)
                return
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

    async def stop_feed(self, request: pb.StopFeedRequest) -> pb.Feed:
        room = await self.rooms.get(request.room_id)
        live = self.live.get(room.room_id)
        if live is None or live.feed is None:
            raise FailedPrecondition(f"room {shown(room.room_id)} has no feed", field="room_id")
        await self._stop_feed(live)
        return live.feed
