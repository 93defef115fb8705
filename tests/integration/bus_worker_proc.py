"""A worker process for test_bus's kill test: its handler publishes the output, says so, then hangs before the ack.

Usage: bus_worker_proc.py URL STREAM DURABLE IN_SUBJECT OUT_SUBJECT ACK_WAIT_S
Prints ``published <msg_id> <duplicate>`` on stdout once the output is published; the test then kills it with -9.
"""

from __future__ import annotations

import asyncio
import sys

from tessera.runtime.bus import Bus, ConsumerSpec, Delivery, Worker, derived_msg_id


async def main(argv: list[str]) -> None:
    url, stream, durable, in_subject, out_subject, ack_wait = argv
    ack_wait_s = float(ack_wait)
    consumer = ConsumerSpec(stream=stream, durable=durable, filter_subject=in_subject, ack_wait_s=ack_wait_s)
    async with await Bus.connect(url, "bus-worker-proc", connect_timeout_s=5) as bus:

        async def handler(delivery: Delivery) -> None:
            ack = await bus.publish(out_subject, delivery.data[::-1], msg_id=derived_msg_id(delivery.msg_id, "reverse"))
            print(f"published {delivery.msg_id} {bool(ack.duplicate)}", flush=True)
            await asyncio.sleep(3600)  # killed here: the effect happened, the ack never will

        await Worker(bus, consumer, handler, concurrency=1, batch=1, fetch_timeout_s=0.5).run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:7]))
