from __future__ import annotations

import pytest

from tessera.monitoring.shedding import FrameShedder, is_stale


def test_credits_then_queue_then_drop_oldest() -> None:
    shed: FrameShedder[str] = FrameShedder(max_in_flight=2, max_waiting=2)
    sent, dropped = shed.offer(1, "f1", 0.0)
    assert [s for s, _ in sent] == [1] and not dropped
    assert [s for s, _ in shed.offer(2, "f2", 0.0)[0]] == [2]
    assert shed.offer(3, "f3", 0.0) == ([], [])  # no credit: waits
    assert shed.offer(4, "f4", 0.0) == ([], [])
    sent, dropped = shed.offer(5, "f5", 0.0)  # queue full: the oldest waiting frame goes
    assert sent == [] and dropped == [(3, "f3")]
    assert shed.shed == 1 and shed.waiting == 2 and shed.in_flight == 2
    assert shed.done(1, 0.1) == [(4, "f4")]  # a credit comes back: the oldest waiting frame goes out
    assert shed.done(2, 0.2) == [(5, "f5")]
    assert shed.admitted == 4 and shed.waiting == 0


def test_a_lost_result_does_not_stall_the_room() -> None:
    shed: FrameShedder[str] = FrameShedder(max_in_flight=1, max_waiting=1, credit_timeout_s=5.0)
    shed.offer(1, "a", 0.0)
    shed.offer(2, "b", 1.0)
    assert shed.poll(4.0) == []
    assert shed.poll(6.0) == [(2, "b")]  # seq 1's credit expired
    assert shed.done(99, 6.0) == []  # an unknown or late result is harmless


def test_zero_waiting_keeps_only_what_can_go() -> None:
    shed: FrameShedder[int] = FrameShedder(max_in_flight=1, max_waiting=0)
    assert shed.offer(1, 1, 0)[0] == [(1, 1)]
    assert shed.offer(2, 2, 0) == ([], [(2, 2)])
    with pytest.raises(ValueError):
        FrameShedder(max_in_flight=0)


def test_stale_frames() -> None:
    assert is_stale(1000, 3500, 2000)
    assert not is_stale(1000, 2500, 2000)
    assert not is_stale(1000, 99_999, 0)  # 0 disables
    assert not is_stale(0, 99_999, 2000)  # unknown acceptance time
