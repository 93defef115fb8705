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

from tessera.monitoring import contracts
from tessera.runtime.bus import Bus, ConsumerSpec, KeyValueTable, StreamSpec

PREFIX = "tessera.monitoring"
WORK = StreamSpec(
    "MONITORING",
    (f"{PREFIX}.*.frames", f"{PREFIX}.*.audio", f"{PREFIX}.*.detections.*", f"{PREFIX}.*.dead.*"),
    max_age_s=600.0,
    max_bytes=1 << 30,
    duplicate_window_s=120.0,
)
ALERTS = StreamSpec("MONITORING_ALERTS", (f"{PREFIX}.*.alerts",), max_age_s=30 * 24 * 3600.0, duplicate_window_s=600.0)
ROOMS_BUCKET = "MONITORING_ROOMS"
MODELS = contracts.MODELS  # the models the cascade reads
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


async def rooms(bus: Bus) -> KeyValueTable:
    """The room table (created on first use); values are serialised ``Room`` protos keyed by room id."""
    return await bus.key_value(ROOMS_BUCKET, history=1)
