"""What the drain waits for: a room's segments in flight until every stream that carries them has released them."""

from __future__ import annotations

from tessera.translation.api import Room
from tessera.translation.conference import Conference
from tessera.translation.languages import LanguageSupport

SUPPORT = LanguageSupport.parse("en", "en-es,es-en", "en,es")


def test_a_segment_is_in_flight_until_each_of_its_streams_released_it() -> None:
    room = Room(Conference("standup", "", 60, 0, SUPPORT))
    assert room.in_flight() == 0 and room.queued() == 0
    room.plan(1, ("es",), gap_timeout_s=20)
    room.plan(2, (), gap_timeout_s=20)  # nobody else's language: a transcript only
    assert room.in_flight() == 2
    assert room.orders[("transcript", "")].offer(1, "t1", 0.0) == ["t1"]
    assert room.orders[("transcript", "")].offer(2, "t2", 0.0) == ["t2"]
    assert room.in_flight() == 1, "segment 2 is done; segment 1 still waits for its Spanish text and speech"
    room.orders[("text", "es")].offer(1, "x1", 0.0)
    assert room.in_flight() == 1
    room.orders[("speech", "es")].offer(1, "s1", 0.0)
    assert room.in_flight() == 0
