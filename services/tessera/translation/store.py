"""Where conferences outlive their gateway: the JetStream key-value bucket TRANSLATION_CONFERENCES, one serialised
``Conference`` per conference id, and the rules for reading, merging and expiring those records.

What the record keeps is what a restarted gateway (or another replica) needs to carry a conference on: its identity,
settings, state, the segment counter (written before each segment is published, so a new gateway never reuses a
sequence number that JetStream's duplicate window would drop) and the times that decide expiry. The floor and the
listener queues are not kept: they belong to the connections, and are rebuilt as participants join again.

A conference is written by the gateway its participants are connected to. Two gateways serving one conference at the
same time (a rolling update's overlap) are reconciled by ``merge`` on every write: the segment counter only grows, an
end is never undone. The bucket offers no compare-and-set through the bus, so two segments cut at the same instant on
two gateways could still share a number; routing a conference's participants to one gateway avoids that.
"""

from __future__ import annotations

import base64
import binascii
import bisect
from dataclasses import dataclass

from tessera.runtime.bus import Bus, KeyValueTable
from tessera.runtime.errors import InvalidArgument
from tessera.runtime.identifiers import is_valid_id
from tessera.translation.conference import Conference, State
from tessera.translation.languages import LanguageSupport
from tessera.translation.v1 import translation_pb2 as pb

BUCKET = "TRANSLATION_CONFERENCES"
ENDED_KEPT_S = 300.0  # an ended conference stays readable (GetConference, ListConferences) this long
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
_TOKEN_PREFIX = "c1:"  # versions the page token's inside
_MAX_TOKEN_CHARS = 128


def expire_time_ms(conference: Conference, idle_ttl_s: float, now_ms: int, connected: bool) -> int:
    """When ``conference`` is deleted unless something happens first.

    Active: ``idle_ttl_s`` after its last activity, and at least that far from ``now_ms`` while anyone is
    ``connected`` (the gateway holding the connections renews it). Ended: ``ENDED_KEPT_S`` after the end."""
    if conference.state is State.ENDED:
        return conference.end_ms + int(ENDED_KEPT_S * 1000)
    ttl_ms = int(idle_ttl_s * 1000)
    expires = conference.last_activity_ms + ttl_ms
    return max(expires, now_ms + ttl_ms) if connected else expires


def is_expired(record: pb.Conference, now_ms: int) -> bool:
    return 0 < record.expire_time_ms <= now_ms


def to_record(conference: Conference, idle_ttl_s: float, now_ms: int, connected: bool) -> pb.Conference:
    """What is stored: no floor (it belongs to the connections); participants as connected when written."""
    return pb.Conference(
        conference_id=conference.conference_id,
        display_name=conference.display_name,
        state=pb.CONFERENCE_STATE_ACTIVE if conference.state is State.ACTIVE else pb.CONFERENCE_STATE_ENDED,
        participants=[
            pb.Participant(participant_id=p.participant_id, display_name=p.display_name, language=p.language_tag)
            for p in conference.participants.values()
        ],
        max_floor_hold_ms=int(conference.max_hold_s * 1000),
        languages=conference.languages(),
        segments_accepted=conference.next_seq - 1,
        create_time_ms=conference.created_unix_ms,
        last_activity_time_ms=conference.last_activity_ms,
        end_time_ms=conference.end_ms,
        expire_time_ms=expire_time_ms(conference, idle_ttl_s, now_ms, connected),
    )


def from_record(record: pb.Conference, support: LanguageSupport) -> Conference:
    """A conference taken over from its record: nobody connected here yet, nobody holding the floor."""
    return Conference(
        conference_id=record.conference_id,
        display_name=record.display_name,
        max_hold_s=record.max_floor_hold_ms / 1000,
        created_unix_ms=record.create_time_ms,
        support=support,
        state=State.ENDED if record.state == pb.CONFERENCE_STATE_ENDED else State.ACTIVE,
        next_seq=record.segments_accepted + 1,
        last_activity_ms=record.last_activity_time_ms or record.create_time_ms,
        end_ms=record.end_time_ms,
    )


def merge(conference: Conference, stored: pb.Conference) -> bool:
    """Take in what another gateway may have written since: the counter only grows, an end is never undone, the
    latest activity wins. True when the stored record ended a conference that was active here."""
    conference.next_seq = max(conference.next_seq, stored.segments_accepted + 1)
    conference.last_activity_ms = max(conference.last_activity_ms, stored.last_activity_time_ms)
    if stored.state == pb.CONFERENCE_STATE_ENDED and conference.state is State.ACTIVE:
        conference.state = State.ENDED
        conference.end_ms = stored.end_time_ms
        return True
    return False


def encode_page_token(last_id: str) -> str:
    return base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{last_id}".encode()).decode().rstrip("=")


def decode_page_token(token: str, field: str = "page_token") -> str:
    """The conference id a page ends at; INVALID_ARGUMENT naming ``field`` for anything else."""
    refused = InvalidArgument("not a page token of ListConferences: pass next_page_token back as received", field=field)
    if len(token) > _MAX_TOKEN_CHARS:
        raise refused
    try:
        inside = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        raise refused from None
    last_id = inside.removeprefix(_TOKEN_PREFIX)
    if not inside.startswith(_TOKEN_PREFIX) or not is_valid_id(last_id):
        raise refused
    return last_id


def page_size(requested: int, field: str = "page_size") -> int:
    """0: the default; above the maximum: the maximum (AIP-158); negative: INVALID_ARGUMENT."""
    if requested < 0:
        raise InvalidArgument(f"must be 0 (the default, {DEFAULT_PAGE_SIZE}) or positive", field=field)
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


@dataclass(frozen=True)
class Page:
    ids: list[str]
    next_page_token: str


def page_of(ids: list[str], after: str, size: int) -> Page:
    """The ``size`` ids after ``after`` in id order, and the token of the page after them (empty: no more)."""
    ordered = sorted(ids)
    start = bisect.bisect_right(ordered, after) if after else 0
    chosen = ordered[start : start + size]
    more = start + size < len(ordered)
    return Page(chosen, encode_page_token(chosen[-1]) if more and chosen else "")


class ConferenceStore:
    """The bucket; ``open`` it before use."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._kv: KeyValueTable | None = None

    async def open(self) -> None:
        self._kv = await self.bus.key_value(BUCKET, history=1)

    @property
    def kv(self) -> KeyValueTable:
        if self._kv is None:
            raise RuntimeError("ConferenceStore.open() first")
        return self._kv

    async def get(self, conference_id: str) -> pb.Conference | None:
        raw = await self.kv.get(conference_id)
        return pb.Conference.FromString(raw) if raw else None

    async def put(self, record: pb.Conference) -> None:
        await self.kv.put(record.conference_id, record.SerializeToString())

    async def delete(self, conference_id: str) -> None:
        await self.kv.delete(conference_id)

    async def ids(self) -> list[str]:
        return sorted(await self.kv.keys())
