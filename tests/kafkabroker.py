"""A Kafka cluster for the tests: librdkafka's mock cluster (the real Kafka protocol, one broker, topics created
on first use with 4 partitions), kept alive by this process, reachable from other processes on loopback.

    python tests/kafkabroker.py      # prints the bootstrap address, then serves until killed
"""

from __future__ import annotations

import sys
import time

from confluent_kafka import Producer


def main() -> None:
    keeper = Producer({"test.mock.num.brokers": 1, "log_level": 3})
    md = keeper.list_topics(timeout=10)
    b = next(iter(md.brokers.values()))
    print(f"{b.host}:{b.port}", flush=True)
    while True:
        keeper.poll(1.0)
        time.sleep(0.5)
        if sys.stdin.closed:
            return


if __name__ == "__main__":
    main()
