from __future__ import annotations

import pytest

from tessera.translation.floor import Floor, NoticeKind


def kinds(notices: list) -> list[tuple[NoticeKind, str | None, str, int]]:
    return [(n.kind, n.to, n.holder, n.position) for n in notices]


def test_fifo_queue_and_release() -> None:
    floor = Floor(max_hold_s=60)
    assert kinds(floor.request("a", 0)) == [(NoticeKind.GRANTED, "a", "a", 0), (NoticeKind.CHANGED, None, "a", 0)]
    assert kinds(floor.request("b", 1)) == [(NoticeKind.QUEUED, "b", "a", 1)]
    assert kinds(floor.request("c", 2)) == [(NoticeKind.QUEUED, "c", "a", 2)]
    assert floor.may_speak("a") and not floor.may_speak("b")
    notices = floor.release("a", 3)
    assert kinds(notices) == [
        (NoticeKind.RELEASED, "a", "", 0),
        (NoticeKind.GRANTED, "b", "b", 0),
        (NoticeKind.CHANGED, None, "b", 0),
        (NoticeKind.QUEUED, "c", "b", 1),  # c moved up to first in line
    ]
    assert floor.holder == "b" and floor.queue == ["c"]


def test_requests_are_idempotent_and_non_holders_cannot_release() -> None:
    floor = Floor(60)
    floor.request("a", 0)
    floor.request("b", 0)
    assert kinds(floor.request("b", 1)) == [(NoticeKind.QUEUED, "b", "a", 1)]
    assert floor.queue == ["b"]
    assert floor.release("zed", 1) == []
    assert floor.holder == "a"


def test_max_hold_expires_to_next() -> None:
    floor = Floor(max_hold_s=10)
    floor.request("a", 100)
    floor.request("b", 101)
    assert floor.expires_at() == 110
    assert floor.expire(109.9) == []
    notices = floor.expire(110)
    assert notices[0].kind is NoticeKind.RELEASED and notices[0].reason == "max_hold"
    assert floor.holder == "b" and floor.expires_at() == 120


def test_disconnect_releases_floor_or_place() -> None:
    floor = Floor(60)
    floor.request("a", 0)
    floor.request("b", 0)
    floor.request("c", 0)
    assert kinds(floor.leave("b", 1)) == [(NoticeKind.QUEUED, "c", "a", 1)]
    notices = floor.leave("a", 2)
    assert notices[0].reason == "disconnected" and floor.holder == "c"
    assert kinds(floor.leave("c", 3))[-1] == (NoticeKind.CHANGED, None, "", 0)
    assert floor.holder == "" and floor.expires_at() is None


def test_bad_hold() -> None:
    with pytest.raises(ValueError):
        Floor(0)
