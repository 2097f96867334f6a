"""A pika publisher in its own process, for the trace's throughput test: publishes
``count`` messages of ``size`` bytes through ``port`` and prints the seconds it took
(the last message known to have passed through the proxy: a round trip ends the run)."""

from __future__ import annotations

import sys
import time

import pika


def main(port: int, count: int, size: int) -> None:
    params = pika.ConnectionParameters(
        "127.0.0.1", port, "/", pika.PlainCredentials("guest", "guest"), connection_attempts=1
    )
    conn = pika.BlockingConnection(params)
    channel = conn.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    body = b"x" * size
    props = pika.BasicProperties(content_type="application/octet-stream", headers={"n": 1})
    started = time.perf_counter()
    for _ in range(count):
        channel.basic_publish("", queue, body, props)
    channel.queue_declare(queue, passive=True)  # everything before it has been relayed
    elapsed = time.perf_counter() - started
    conn.close()
    print(f"{elapsed:.6f}")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
