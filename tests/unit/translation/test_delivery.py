from __future__ import annotations

import asyncio

from tessera.translation.delivery import ListenerQueue, SegmentOrder


def test_in_order_once_each() -> None:
    order: SegmentOrder[str] = SegmentOrder(next_seq=1, gap_timeout_s=5)
    assert order.offer(2, "b", 0) == []
    assert order.offer(1, "a", 0) == ["a", "b"]
    assert order.offer(1, "a-again", 0) == []  # duplicate after redelivery
    assert order.offer(3, "c", 0) == ["c"]


def test_gap_times_out_then_late_item_still_delivered() -> None:
    order: SegmentOrder[str] = SegmentOrder(next_seq=1, gap_timeout_s=5)
    assert order.offer(2, "b", 0) == []
    assert order.poll(4.9) == []
    assert order.poll(5.0) == ["b"]
    assert order.offer(1, "a", 6) == ["a"]  # late, not lost
    assert order.offer(1, "a", 7) == []  # and only once


def test_unexpected_sequences_are_not_waited_for() -> None:
    order: SegmentOrder[str] = SegmentOrder(next_seq=1, gap_timeout_s=60, expects=lambda s: s % 2 == 0)
    assert order.offer(2, "two", 0) == ["two"]
    assert order.offer(4, "four", 0) == ["four"]


def test_skip_to_for_late_joiners() -> None:
    order: SegmentOrder[str] = SegmentOrder(next_seq=1)
    order.offer(3, "c", 0)
    order.skip_to(5)
    assert order.offer(5, "e", 0) == ["e"]


async def test_listener_queue_drops_oldest_and_counts() -> None:
    queue: ListenerQueue[int] = ListenerQueue(3)
    for i in range(5):
        queue.put(i)
    assert len(queue) == 3 and queue.take_dropped() == 2 and queue.take_dropped() == 0
    assert [await queue.get() for _ in range(3)] == [2, 3, 4]
    waiter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    queue.put(9)
    assert await asyncio.wait_for(waiter, 1) == 9
