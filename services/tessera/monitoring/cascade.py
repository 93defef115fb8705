"""Subjects, streams, consumers and the room table of the monitoring cascade on NATS JetStream.

tessera.monitoring.<room>.frames             gateway -> detector worker        (FrameMessage)
tessera.monitoring.<room>.audio              gateway -> audio-event worker     (AudioWindowMessage)
tessera.monitoring.<room>.detections.frame   detector -> fusion, gateway       (FrameDetections; credits shedding)
tessera.monitoring.<room>.detections.audio   audio-event worker -> fusion      (AudioEvents)
tessera.monitoring.<room>.alerts             fusion -> Watch, audit            (Alert)

The working stream keeps minutes of data; the alert stream is the durable, replayable audit log (30 days by default)
whose de-duplication window drops a republished alert (same alert id). Rooms live in the JetStream key-value bucket
MONITORING_ROOMS, so the gateway and the fusion worker share them and they survive restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import api

from tessera.runtime.bus import Bus, BusRejected, BusUnavailable, ConsumerSpec, StreamSpec

PREFIX = "tessera.monitoring"
ROOM_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
WORK = StreamSpec(
    "MONITORING",
    (f"{PREFIX}.*.frames", f"{PREFIX}.*.audio", f"{PREFIX}.*.detections.*", f"{PREFIX}.*.dead.*"),
    max_age_s=600.0,
    max_bytes=1 << 30,
    duplicate_window_s=120.0,
)
ALERTS = StreamSpec("MONITORING_ALERTS", (f"{PREFIX}.*.alerts",), max_age_s=30 * 24 * 3600.0, duplicate_window_s=600.0)
ROOMS_BUCKET = "MONITORING_ROOMS"
MODELS = ("object_detector", "audio_events", "av_fusion")
DEAD_ROOM = "_"  # not a valid room id: dead letters cannot collide with a room's subjects


def subject(room_id: str, stage: str) -> str:
    return f"{PREFIX}.{room_id}.{stage}"


def room_of(subject_name: str) -> str:
    parts = subject_name.split(".")
    return parts[2] if len(parts) > 2 else ""


def consumer(stage: str, filter_subject: str, ack_wait_s: float, max_ack_pending: int = 1000) -> ConsumerSpec:
    return ConsumerSpec(
        stream=WORK.name,
        durable=f"monitoring_{stage}",
        filter_subject=filter_subject,
        ack_wait_s=ack_wait_s,
        max_deliver=3,
        max_ack_pending=max_ack_pending,
        dead_letter_subject=subject(DEAD_ROOM, f"dead.{stage}"),
    )


# Handlers take milliseconds to a second: an unacknowledged message (its worker died) comes back after 5 s.
CONSUMERS = {
    "detector": consumer("detector", f"{PREFIX}.*.frames", 5.0),
    "audio": consumer("audio", f"{PREFIX}.*.audio", 5.0),
    "fusion": consumer("fusion", f"{PREFIX}.*.detections.*", 5.0),
}


async def rooms(bus: Bus) -> Any:
    """The room table (created on first use); values are serialised ``Room`` protos keyed by room id."""
    try:
        return await bus.js.create_key_value(bucket=ROOMS_BUCKET, history=1)
    except nats.js.errors.APIError as error:
        raise BusRejected(f"key-value bucket {ROOMS_BUCKET}: {error.description or error}") from error
    except (TimeoutError, nats.errors.Error) as error:
        raise BusUnavailable(f"key-value bucket {ROOMS_BUCKET}: {error or type(error).__name__}") from error


async def get_room(kv: Any, room_id: str) -> bytes | None:
    try:
        entry = await kv.get(room_id)
    except nats.js.errors.KeyNotFoundError:
        return None
    except (TimeoutError, nats.errors.Error) as error:
        raise BusUnavailable(f"room table: {error or type(error).__name__}") from error
    value: bytes | None = entry.value
    return value or None


async def subscribe(
    bus: Bus,
    subject_name: str,
    callback: Callable[[Msg], Awaitable[None]],
    *,
    after_sequence: int | None = None,
    since: dt.datetime | None = None,
    replay_all: bool = False,
) -> Any:
    """An ordered push subscription from a chosen point of the stream (new messages only by default)."""
    config = api.ConsumerConfig()
    if replay_all:
        config.deliver_policy = api.DeliverPolicy.ALL
    elif after_sequence is not None:
        config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = after_sequence + 1
    elif since is not None:
        config.deliver_policy = api.DeliverPolicy.BY_START_TIME
        config.opt_start_time = since
    else:
        config.deliver_policy = api.DeliverPolicy.NEW
    try:
        return await bus.js.subscribe(subject_name, cb=callback, ordered_consumer=True, config=config)
    except nats.js.errors.NotFoundError as error:
        raise BusRejected(f"no JetStream stream captures subject {subject_name!r}", reason="NO_STREAM") from error
    except (TimeoutError, nats.errors.Error) as error:
        raise BusUnavailable(f"subscribe to {subject_name!r}: {error or type(error).__name__}") from error


async def read_recent(bus: Bus, subject_name: str, since: dt.datetime, timeout_s: float = 3.0) -> list[Msg]:
    """Messages on ``subject_name`` stored since ``since`` (a bounded catch-up read for state rebuilt after a
    restart): as many as the consumer reported pending when it started, or what arrived within ``timeout_s``."""
    found: list[Msg] = []
    arrived = asyncio.Event()

    async def collect(message: Msg) -> None:
        found.append(message)
        arrived.set()

    sub = await subscribe(bus, subject_name, collect, since=since)
    try:
        info = await sub.consumer_info()
        target = int(info.num_pending or 0) + int(info.delivered.consumer_seq or 0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(found) < target and loop.time() < deadline:
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), max(0.01, deadline - loop.time()))
    except (TimeoutError, nats.errors.Error) as error:
        raise BusUnavailable(f"catch-up read of {subject_name!r}: {error or type(error).__name__}") from error
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return found
