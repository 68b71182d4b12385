"""Kafka sources: a topic's messages (JSON objects) loaded with an exactly-once effect.

Messages are read in batches (``kafka.batch`` at most: bounded memory) and each batch's rows, rejects and the
consumer's next offset per partition commit **in one warehouse transaction** (``_eventmart_offsets``). On start
and after every rebalance a partition is read from the offset the warehouse holds, not from Kafka's: a consumer
killed at any point re-reads at most the batch that did not commit, and that batch's keys are found loaded. The
offsets are committed to Kafka as well, after the warehouse, so lag tools see the group's progress. (On
ClickHouse, which has no transactions, the rows go in first and the offsets after: a crash in between re-reads a
batch whose keys are then duplicates — the same effect.)

Every message is a record: a value that is not UTF-8, not JSON or lacks a required column becomes one reject
(file ``kafka://topic/partition``, line = the offset) and the partition goes on. Each record also carries its
message timestamp as ``kafka_ts`` (unix ms) for sources whose events have no time of their own.

Policy when offsets do not fit the topic: an offset beyond the partition's end (the topic was recreated) or before
its start (retention deleted messages never read) starts the partition at its first message and says so in the
result; keys keep the raw table exact. New partitions start at ``kafka.start`` (earliest by default).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import UserError
from .chunks import Chunk

if TYPE_CHECKING:
    from ..config import Source
    from ..warehouse import Warehouse
    from .log import IngestResult

OFFSETS = "_eventmart_offsets"
ASSIGN_WAIT = 20.0  # seconds to wait for the group to assign partitions (a join takes a few seconds)
LINGER = 0.25  # seconds a batch may wait for more messages before it commits


def _kafka() -> Any:
    try:
        import confluent_kafka
    except ImportError:
        raise UserError("a Kafka source needs the kafka extra: pip install 'eventmart[kafka]' (confluent-kafka)") from None
    return confluent_kafka


def group_of(name: str, src: Source) -> str:
    return src.kafka.group or f"eventmart-{name}"


_QUIET = logging.getLogger("eventmart.kafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def client_config(src: Source, **extra: Any) -> dict[str, Any]:
    # librdkafka's own log lines go to a silent logger: what matters reaches the user as one error line
    return {"bootstrap.servers": src.kafka.bootstrap_servers, "logger": _QUIET, **src.kafka.options, **extra}


# --- offsets in the warehouse ------------------------------------------------------------------------------


def ensure_offsets(wh: Warehouse) -> None:
    if wh.table_columns(OFFSETS) is None:
        wh.create_table(OFFSETS, [(c, wh.type_name(t)) for c, t in (
            ("source", "string"), ("topic", "string"), ("partition", "int"), ("next_offset", "int"),
            ("updated_at", "timestamp"))])


def stored_offsets(wh: Warehouse, name: str, topic: str, concurrent: bool = False) -> dict[int, int]:
    """``concurrent``: through the warehouse's thread-safe reads (a dashboard thread)."""
    if not (wh.concurrent_table_exists(OFFSETS) if concurrent else wh.table_columns(OFFSETS) is not None):
        return {}
    fetch = wh.concurrent_fetch if concurrent else wh.fetch
    return {int(p): int(o) for p, o in fetch(
        f"SELECT {wh.q('partition')}, max(next_offset) FROM {wh.q(OFFSETS)} WHERE source = {{{{ s }}}} "
        f"AND topic = {{{{ t }}}} GROUP BY {wh.q('partition')}", {"s": name, "t": topic}).rows}


def save_offsets(wh: Warehouse, name: str, topic: str, offsets: dict[int, int], now: datetime) -> None:
    """Inside the batch's transaction. An offset never moves back (a consumer that lost its partition in a
    rebalance and still commits a batch cannot rewind it)."""
    have = stored_offsets(wh, name, topic)
    for part, nxt in offsets.items():
        nxt = max(nxt, have.get(part, 0))
        wh.delete_rows(OFFSETS, f"source = {{{{ s }}}} AND topic = {{{{ t }}}} AND {wh.q('partition')} = {{{{ p }}}}",
                       {"s": name, "t": topic, "p": part})
        wh.execute(f"INSERT INTO {wh.q(OFFSETS)} (source, topic, {wh.q('partition')}, next_offset, updated_at) "
                   "VALUES ({{ s }}, {{ t }}, {{ p }}, {{ o }}, {{ n }})",
                   {"s": name, "t": topic, "p": part, "o": nxt, "n": now})


# --- messages to chunks -----------------------------------------------------------------------------------------


def messages_chunk(msgs: list[Any]) -> Chunk:
    """One partition's messages as a JSON chunk: line = offset, the raw text with ``kafka_ts`` added."""
    offsets, raws, rejects = [], [], []
    for m in msgs:
        value = m.value()
        off = m.offset()
        if value is None:
            rejects.append((off, "", "message has no value (a tombstone?)"))
            continue
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            rejects.append((off, value.decode("utf-8", errors="replace"), "not UTF-8 text"))
            continue
        if "\x00" in text:
            rejects.append((off, text.replace("\x00", "\ufffd"), "contains a NUL byte"))
            continue
        ts_type, ts = m.timestamp()
        body = text.lstrip()
        if body.startswith("{") and ts_type and '"kafka_ts"' not in body[:200]:
            rest = body[1:].lstrip()
            text = f'{{"kafka_ts": {int(ts)}' + ("" if rest.startswith("}") else ", ") + rest
        offsets.append(off)
        raws.append(text)
    t = pa.table({"_row": pa.array(range(len(raws)), pa.int64()), "_line": pa.array(offsets, pa.int64()),
                  "_raw": pa.array(raws, pa.string())})
    return Chunk(t, sum(len(r) for r in raws), rejects, "json", None,
                 where=lambda rs, o=offsets, r=raws: {i: (o[i], r[i]) for i in rs})


class Reader:
    """A consumer in the source's group that yields batches for :func:`~eventmart.sources.ingest.stream_ingest`."""

    def __init__(self, wh: Warehouse, name: str, src: Source, drain: bool, stop: threading.Event | None = None,
                 wait: float = ASSIGN_WAIT, lock: Any = None):
        ck = _kafka()
        self.ck, self.wh, self.name, self.src, self.drain = ck, wh, name, src, drain
        self.topic = src.kafka.topic
        self.stop = stop or threading.Event()
        self.wait = wait
        self.lock = lock or contextlib.nullcontext()  # the warehouse's writer lock in `eventmart serve`
        self.notes: list[str] = []
        self.assigned: dict[int, int] = {}  # partition -> high watermark when it was assigned (drain stops there)
        self.position: dict[int, int] = {}
        self.last_error: str | None = None
        self.consumer = ck.Consumer(client_config(src, **{
            "group.id": group_of(name, src), "enable.auto.commit": False, "auto.offset.reset": src.kafka.start,
            "session.timeout.ms": 6000, "enable.partition.eof": False,
            "topic.metadata.refresh.interval.ms": 5000,  # a topic created later is found within seconds
            "error_cb": lambda err: setattr(self, "last_error", err.str())}))
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, consumer: Any, partitions: list) -> None:
        ck = self.ck
        with self.lock:
            stored = stored_offsets(self.wh, self.name, self.topic)
        for tp in partitions:
            lo, hi = consumer.get_watermark_offsets(tp, timeout=10)
            self.assigned[tp.partition] = hi
            have = stored.get(tp.partition)
            if have is None:
                tp.offset = ck.OFFSET_BEGINNING if self.src.kafka.start == "earliest" else ck.OFFSET_END
                self.position[tp.partition] = lo if self.src.kafka.start == "earliest" else hi
            elif have > hi or have < lo:
                why = "is beyond its end (the topic was recreated?)" if have > hi else \
                    f"is before its first message ({have:,} < {lo:,}: {lo - have:,} expired before they were read)"
                self.notes.append(f"partition {tp.partition}: offset {have:,} {why}; read from its first message")
                tp.offset = lo
                self.position[tp.partition] = lo
            else:
                tp.offset = have
                self.position[tp.partition] = have
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Any, partitions: list) -> None:
        for tp in partitions:
            self.assigned.pop(tp.partition, None)

    def _drained(self) -> bool:
        return bool(self.assigned) and all(self.position.get(p, 0) >= hw for p, hw in self.assigned.items())

    def batches(self) -> Iterator[tuple[list[tuple[str, Chunk]], Callable[[], None]]]:
        from ..timeutil import utcnow

        waited = time.monotonic()
        while not self.stop.is_set():
            if self.drain and self._drained():
                return
            msgs = self.consumer.consume(self.src.kafka.batch, timeout=0.5)
            # a fetch holds about a megabyte per partition: gather up to a batch (or LINGER seconds) so that each
            # transaction carries many messages
            until = time.monotonic() + LINGER
            while msgs and len(msgs) < self.src.kafka.batch and time.monotonic() < until:
                more = self.consumer.consume(self.src.kafka.batch - len(msgs), timeout=max(until - time.monotonic(), 0))
                if not more:
                    break
                msgs.extend(more)
            if not msgs:
                if self.drain and not self.assigned and time.monotonic() - waited > self.wait:
                    why = f" ({self.last_error})" if self.last_error else ""
                    raise UserError(f"sources.{self.name}.kafka: no partition of topic '{self.topic}' was assigned "
                                    f"within {self.wait:.0f}s{why}; check bootstrap_servers and the topic")
                continue
            by_part: dict[int, list] = {}
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == self.ck.KafkaError._PARTITION_EOF:
                        continue
                    if err.code() == self.ck.KafkaError.UNKNOWN_TOPIC_OR_PART:
                        self.last_error = err.str()  # not there yet: assigned when it appears (drain: waits)
                        continue
                    raise UserError(f"sources.{self.name}.kafka: {err.str()}; check the topic and the brokers")
                by_part.setdefault(m.partition(), []).append(m)
            if not by_part:
                continue
            nxt = {p: ms[-1].offset() + 1 for p, ms in by_part.items()}
            chunks = [(f"kafka://{self.topic}/{p}", messages_chunk(ms)) for p, ms in sorted(by_part.items())]
            now = utcnow()
            yield chunks, lambda nxt=nxt, now=now: (ensure_offsets(self.wh),
                                                     save_offsets(self.wh, self.name, self.topic, nxt, now))
            # the batch is committed in the warehouse: tell Kafka too (lag tools), and move on
            self.position.update(nxt)
            tps = [self.ck.TopicPartition(self.topic, p, o) for p, o in nxt.items()]
            try:
                self.consumer.commit(offsets=tps, asynchronous=True)
            except self.ck.KafkaException:  # not ours any more after a rebalance: the warehouse decides
                pass

    def close(self) -> None:
        self.consumer.close()


def consume(wh: Warehouse, name: str, src: Source, drain: bool = True, stop: threading.Event | None = None,
            dimensions: Sequence[str] = (), on_batch: Callable | None = None, wait: float = ASSIGN_WAIT,
            lock: Any = None) -> IngestResult:
    """Load the topic's messages: what is there when it starts (``drain``), or until ``stop`` is set. ``lock``:
    held around every use of the warehouse (a server's other threads write too)."""
    from .ingest import stream_ingest

    reader = Reader(wh, name, src, drain, stop, wait, lock)
    try:
        res = stream_ingest(wh, name, src, reader.batches(), f"kafka://{src.kafka.topic}", dimensions, on_batch,
                            lock)
    finally:
        reader.close()
    res.notes = reader.notes
    return res


# --- lag and producing ----------------------------------------------------------------------------------------


def lag(wh: Warehouse, name: str, src: Source, concurrent: bool = False) -> list[tuple[int, int | None, int, int]]:
    """(partition, the warehouse's next offset, the partition's end, messages not loaded yet) per partition."""
    ck = _kafka()
    c = ck.Consumer(client_config(src, **{"group.id": f"{group_of(name, src)}-lag", "enable.auto.commit": False}))
    try:
        try:
            md = c.list_topics(src.kafka.topic, timeout=10)
        except ck.KafkaException as e:
            raise UserError(f"sources.{name}.kafka: cannot reach {src.kafka.bootstrap_servers} "
                            f"({e.args[0].str() if e.args else e}); check bootstrap_servers") from None
        topic = md.topics.get(src.kafka.topic)
        if topic is None or topic.error is not None:
            raise UserError(f"sources.{name}.kafka: topic '{src.kafka.topic}' not found at "
                            f"{src.kafka.bootstrap_servers}")
        stored = stored_offsets(wh, name, src.kafka.topic, concurrent)
        out = []
        for p in sorted(topic.partitions):
            lo, hi = c.get_watermark_offsets(ck.TopicPartition(src.kafka.topic, p), timeout=10)
            have = stored.get(p)
            out.append((p, have, hi, hi - (have if have is not None else lo)))
        return out
    finally:
        c.close()


def produce(name: str, src: Source, files: list[str], topic: str | None = None) -> int:
    """Publish the records of JSON Lines files to the source's topic (or ``topic``), keyed by the source's key
    columns: what the seed's hourly S3 → Kafka DAG did. Returns the messages sent."""
    ck = _kafka()
    topic = topic or src.kafka.topic
    producer = ck.Producer(client_config(src, **{"linger.ms": 20, "queue.buffering.max.messages": 500_000}))
    failed: list[str] = []

    def report(err: Any, msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    n = 0
    for f in files:
        with open(f, "rb") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                key = None
                try:
                    obj = json.loads(line)
                    key = "|".join(str(obj.get(k, "")) for k in src.key).encode()
                except (ValueError, AttributeError):
                    pass  # sent as it is: the consumer rejects it with a reason
                while True:
                    try:
                        producer.produce(topic, line, key=key, on_delivery=report)
                        break
                    except BufferError:
                        producer.poll(0.1)
                n += 1
                producer.poll(0)
    left = producer.flush(60)
    if left or failed:
        raise UserError(f"{left + len(failed)} of {n} message(s) not delivered to {topic}: "
                        f"{(failed or ['timed out'])[0]}")
    return n


def mock_cluster() -> tuple[Any, str]:
    """librdkafka's in-process Kafka cluster (the real protocol, one broker): the object keeps it alive; its
    bootstrap address for other clients and processes."""
    ck = _kafka()
    keeper = ck.Producer({"test.mock.num.brokers": 1, "logger": _QUIET})
    md = keeper.list_topics(timeout=10)
    b = next(iter(md.brokers.values()))
    return keeper, f"{b.host}:{b.port}"


def files_of(folder: Path, pattern: str) -> list[str]:
    return [str(p) for p in sorted(folder.glob(pattern))]
