"""Conference records: what is kept, how two writers are reconciled, expiry, and ListConferences paging."""

from __future__ import annotations

import pytest

from tessera.runtime.errors import InvalidArgument
from tessera.translation import store
from tessera.translation.api import TranslationSettings
from tessera.translation.conference import Conference, State
from tessera.translation.languages import LanguageSupport
from tessera.translation.v1 import translation_pb2 as pb

SUPPORT = LanguageSupport.parse("en", "en-es,es-en", "en,es")


def _conference(**kwargs: object) -> Conference:
    return Conference("standup", "Stand-up", 30.0, 1_000_000, SUPPORT, **kwargs)  # type: ignore[arg-type]


def test_a_record_round_trips_what_a_new_gateway_needs() -> None:
    conf = _conference()
    conf.join("ana", "Ana", "en-GB")
    conf.floor.request("ana", 0.0)
    for _ in range(3):
        conf.plan_segment("ana")
    conf.last_activity_ms = 1_005_000
    record = store.to_record(conf, idle_ttl_s=60, now_ms=1_006_000, connected=True)
    assert record.segments_accepted == 3 and record.max_floor_hold_ms == 30_000
    assert [p.participant_id for p in record.participants] == ["ana"] and record.languages == ["en"]
    assert not record.floor_holder_id, "the floor belongs to the connections, not the record"
    back = store.from_record(pb.Conference.FromString(record.SerializeToString()), SUPPORT)
    assert back.next_seq == 4, "a new gateway numbers on where the old one stopped"
    assert back.participants == {} and back.floor.holder == "", "nobody is connected to the new gateway yet"
    assert (back.display_name, back.max_hold_s, back.created_unix_ms) == ("Stand-up", 30.0, 1_000_000)
    assert back.last_activity_ms == 1_005_000 and back.state is State.ACTIVE


def test_expiry_counts_from_the_last_activity_and_is_renewed_while_anyone_is_connected() -> None:
    conf = _conference(last_activity_ms=2_000_000)
    assert store.expire_time_ms(conf, 60, now_ms=2_010_000, connected=False) == 2_060_000
    assert store.expire_time_ms(conf, 60, now_ms=2_100_000, connected=True) == 2_160_000
    conf.end(2_200_000)
    assert store.expire_time_ms(conf, 60, now_ms=2_200_000, connected=True) == 2_200_000 + 300_000
    record = store.to_record(conf, 60, 2_200_000, connected=False)
    assert not store.is_expired(record, 2_499_999) and store.is_expired(record, 2_500_000)
    assert not store.is_expired(pb.Conference(), 10**13), "a record without an expiry is never taken for expired"


def test_merge_keeps_the_counter_growing_and_an_end_final() -> None:
    conf = _conference(next_seq=5, last_activity_ms=3_000_000)
    stored = pb.Conference(segments_accepted=9, last_activity_time_ms=2_000_000, state=pb.CONFERENCE_STATE_ACTIVE)
    assert store.merge(conf, stored) is False
    assert conf.next_seq == 10 and conf.last_activity_ms == 3_000_000
    assert store.merge(conf, pb.Conference(segments_accepted=2)) is False and conf.next_seq == 10
    ended = pb.Conference(segments_accepted=9, state=pb.CONFERENCE_STATE_ENDED, end_time_ms=3_100_000)
    assert store.merge(conf, ended) is True
    assert conf.state is State.ENDED and conf.end_ms == 3_100_000
    assert store.merge(conf, ended) is False, "already ended here"


def test_pages_walk_every_id_once_in_order() -> None:
    ids = [f"room-{i:03d}" for i in range(7)]
    seen, after = [], ""
    while True:
        page = store.page_of(list(reversed(ids)), after, 3)
        seen += page.ids
        if not page.next_page_token:
            break
        after = store.decode_page_token(page.next_page_token)
    assert seen == ids
    assert store.page_of(ids, "", 7).next_page_token == "", "no token when the page reaches the end"
    assert store.page_of([], "", 3) == store.Page([], "")
    # A token stays valid when its conference is gone: the next page starts after where it was.
    assert store.page_of(["a", "c"], "b", 5).ids == ["c"]


def test_page_size_has_a_default_and_a_ceiling() -> None:
    assert store.page_size(0) == store.DEFAULT_PAGE_SIZE == 50
    assert store.page_size(7) == 7
    assert store.page_size(10_000) == store.MAX_PAGE_SIZE == 200
    with pytest.raises(InvalidArgument) as refused:
        store.page_size(-1)
    assert refused.value.field == "page_size"


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        "Yz",  # base64 of "c", no prefix
        store.encode_page_token("x")[:-1] + "*",
        "YzE6QmFkIElk",  # "c1:Bad Id": an invalid id inside
        "x" * 10_000,
        "ZjE6cm9vbQ",  # another prefix
        "caf\u00e9",
    ],
)
def test_a_page_token_not_made_by_the_server_is_refused_naming_the_field(token: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        store.decode_page_token(token)
    assert refused.value.field == "page_token"
    assert "page token" in refused.value.message and token not in refused.value.message


def test_a_page_token_is_opaque_and_round_trips() -> None:
    token = store.encode_page_token("standup-2")
    assert "standup" not in token and "=" not in token
    assert store.decode_page_token(token) == "standup-2"


def test_settings_bounds_for_expiry_and_drain() -> None:
    own = TranslationSettings()
    assert own.conference_idle_ttl_s == 3600 and own.drain_wait_s == 5
    assert own.sweep_s == 30.0
    assert TranslationSettings(conference_idle_ttl_s=2).sweep_s == 0.5
    assert TranslationSettings(conference_idle_ttl_s=1).sweep_s == 0.25
    for bad in ({"conference_idle_ttl_s": 0.5}, {"conference_idle_ttl_s": 10**7}, {"drain_wait_s": -1}):
        with pytest.raises(ValueError):
            TranslationSettings(**bad)  # type: ignore[arg-type]
