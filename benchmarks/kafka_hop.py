"""One Kafka hop on the embedded broker: the time from a producer's send (acks=all, as the
stages send) to a consumer's receipt, for the consumer's ``fetch_max_wait_ms`` values side by
side, and the CPU an idle consumer then spends on its empty fetches. Records are sent at
irregular gaps, one at a time, as events reach a stage that waits for work.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from alive_tools.embedded.broker import EmbeddedBroker


async def _hops(bootstrap: str, fetch_max_wait_ms: int, records: int) -> dict[str, Any]:
    topic = f"hop-{fetch_max_wait_ms}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, fetch_max_wait_ms=fetch_max_wait_ms, enable_auto_commit=False
    )
    await producer.start()
    await consumer.start()
    consumer.assign([TopicPartition(topic, 0)])
    await consumer.seek_to_beginning()
    latencies_ms: list[float] = []

    async def receive() -> None:
        while len(latencies_ms) < records:
            batch = await consumer.getmany(timeout_ms=100)
            for received in batch.values():
                now = time.time() * 1000
                latencies_ms.extend(now - float(r.value or b"0") for r in received)

    receiving = asyncio.create_task(receive())
    for i in range(records):
        await asyncio.sleep(0.3 + (i % 7) * 0.037)  # irregular: no phase lock with fetches
        await producer.send_and_wait(topic, str(time.time() * 1000).encode())
    await receiving
    before = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(5)  # idle: only empty fetches
    after = resource.getrusage(resource.RUSAGE_SELF)
    await producer.stop()
    await consumer.stop()
    idle_cpu_s = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {
        "hop_ms_p50": round(statistics.median(latencies_ms), 1),
        "hop_ms_max": round(max(latencies_ms), 1),
        "idle_consumer_cpu_percent": round(100 * idle_cpu_s / 5, 2),
    }


def hop_latency(waits_ms: tuple[int, ...] = (500, 100), records: int = 20) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        broker = EmbeddedBroker(Path(tmp) / "broker.log")
        broker.start()
        try:
            return {
                f"fetch_max_wait_{wait}ms": asyncio.run(
                    _hops(broker.bootstrap_servers, wait, records)
                )
                for wait in waits_ms
            }
        finally:
            broker.stop()


if __name__ == "__main__":
    print(hop_latency())
