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

A partition's end is judged from its messages, not from the watermark alone: some brokers (Tansu 0.6) report the
high watermark as the last record *batch*'s base offset + 1, so a stored offset past the watermark may be exactly the
end. Such a partition is read again from the watermark's last batch: if a message at the stored offset - 1 comes,
it is the end (the re-read messages are skipped); if the partition goes quiet before that, the offset is beyond it.
Brokers that do not answer are retried, with librdkafka's reconnect backoff, for ``kafka.connect_timeout`` seconds —
at start, and when all of them go away in the middle of a run (a broker restarting) — then the run fails with one
line; every batch loaded before stays committed.

A drain ends when every partition reached its watermark *and* a poll came back empty. Partitions the group gave to
another member count too: a drain waits while their offsets in the warehouse move (another `ingest`, `serve`), and
a member that died is replaced when the group notices; only a member that holds partitions without progress for
``wait`` seconds is left, and the result says which partitions it left.
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
import pyarrow.compute as pc

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
    """One partition's messages as a JSON chunk: line = offset, the raw text, the message's timestamp as
    ``_kafka_ts`` (the ``kafka_ts`` column unless the JSON has its own). Values are checked as one Arrow array (a
    batch of 50,000 in milliseconds); a batch holding a message that is not UTF-8 text is taken one by one."""
    values = [m.value() for m in msgs]
    offsets = [m.offset() for m in msgs]
    stamps = [ts if kind else None for kind, ts in (m.timestamp() for m in msgs)]
    text = None
    if None not in values:
        try:
            text = pa.array(values, pa.binary()).cast(pa.string())  # Arrow validates the UTF-8
        except pa.ArrowInvalid:
            pass
    if text is not None and pc.any(pc.match_substring(text, "\x00")).as_py():
        text = None
    rejects: list[tuple[int, str, str]] = []
    if text is None:  # a bad message in the batch: find it, keep the others
        keep = []
        for i, value in enumerate(values):
            if value is None:
                rejects.append((offsets[i], "", "message has no value (a tombstone?)"))
                continue
            try:
                t = value.decode("utf-8")
            except UnicodeDecodeError:
                rejects.append((offsets[i], value.decode("utf-8", errors="replace"), "not UTF-8 text"))
                continue
            if "\x00" in t:
                rejects.append((offsets[i], t.replace("\x00", "\ufffd"), "contains a NUL byte"))
                continue
            keep.append(i)
        text = pa.array([values[i] for i in keep], pa.binary()).cast(pa.string())
        offsets, stamps = [offsets[i] for i in keep], [stamps[i] for i in keep]
    n = len(text)
    t = pa.table({"_row": pa.array(range(n), pa.int64()), "_line": pa.array(offsets, pa.int64()), "_raw": text,
                  "_kafka_ts": pa.array(stamps, pa.int64())})
    return Chunk(t, text.nbytes, rejects, "json", None,
                 where=lambda rs, o=offsets, r=text, ts=stamps: {i: (o[i], with_ts(r[i].as_py(), ts[i])) for i in rs})


def with_ts(text: str, ts: int | None) -> str:
    """A rejected message's text as it is kept: with its timestamp as ``kafka_ts`` (replayed after a fix of the
    declared columns, it loads like the message did)."""
    body = text.lstrip()
    if ts is None or not body.startswith("{") or '"kafka_ts"' in body[:200]:
        return text
    rest = body[1:].lstrip()
    return f'{{"kafka_ts": {int(ts)}' + ("" if rest.startswith("}") else ", ") + rest


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
        self.low: dict[int, int] = {}
        self.probing: dict[int, int] = {}  # partition -> stored offset past its watermark, not judged yet
        self.probe_seen: dict[int, float] = {}  # partition -> when a probe's first messages came (or it began)
        self.targets: dict[int, int] | None = None  # every partition of the topic -> its watermark at the start
        self.others: tuple[dict[int, int], float] = ({}, time.monotonic())  # others' offsets, when they last moved
        self.last_error: str | None = None
        self.down_since: float | None = None  # when every broker stopped answering (error_cb's _ALL_BROKERS_DOWN)
        self.consumer = ck.Consumer(client_config(src, **{
            "group.id": group_of(name, src), "enable.auto.commit": False, "auto.offset.reset": src.kafka.start,
            "session.timeout.ms": 6000, "enable.partition.eof": False,
            "topic.metadata.refresh.interval.ms": 5000,  # a topic created later is found within seconds
            "reconnect.backoff.max.ms": 2000,  # a broker back from a restart is found within two seconds
            "error_cb": self._on_error}))
        try:
            self._reach()
        except BaseException:
            self.consumer.close()
            raise
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_error(self, err: Any) -> None:
        self.last_error = err.str()
        if err.code() == self.ck.KafkaError._ALL_BROKERS_DOWN and self.down_since is None:
            self.down_since = time.monotonic()

    def _reach(self, since: float | None = None) -> None:
        """Wait until a broker answers a metadata request, for what is left of ``kafka.connect_timeout`` counted
        from ``since``; then fail with one line."""
        since = time.monotonic() if since is None else since
        limit, attempts = self.src.kafka.connect_timeout, 0
        while not self.stop.is_set():
            attempts += 1
            try:
                self.consumer.list_topics(self.topic, timeout=max(min(2.0, since + limit - time.monotonic()), 0.1))
                self.down_since = None
                return
            except self.ck.KafkaException as e:
                self.last_error = self.last_error or e.args[0].str()
            if time.monotonic() - since >= limit:
                why = f" ({self.last_error})" if self.last_error else ""
                raise UserError(f"sources.{self.name}.kafka: no broker answered at {self.src.kafka.bootstrap_servers} "
                                f"for {limit:g}s ({attempts} attempts){why}; start the broker or fix bootstrap_servers "
                                "(kafka.connect_timeout: how long to retry); batches loaded before stay committed")

    def _on_assign(self, consumer: Any, partitions: list) -> None:
        ck = self.ck
        with self.lock:
            stored = stored_offsets(self.wh, self.name, self.topic)
        if self.targets is None:
            md = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            self.targets = {p: consumer.get_watermark_offsets(ck.TopicPartition(self.topic, p), timeout=10)[1]
                            for p in (md.partitions if md is not None and md.error is None else ())}
        for tp in partitions:
            lo, hi = consumer.get_watermark_offsets(tp, timeout=10)
            self.assigned[tp.partition] = hi
            self.low[tp.partition] = lo
            have = stored.get(tp.partition)
            if have is None:
                tp.offset = ck.OFFSET_BEGINNING if self.src.kafka.start == "earliest" else ck.OFFSET_END
                self.position[tp.partition] = lo if self.src.kafka.start == "earliest" else hi
            elif have < lo:
                self._restart(tp.partition, f"offset {have:,} is before its first message ({have:,} < {lo:,}: "
                                            f"{lo - have:,} expired before they were read)")
                tp.offset = lo
            elif have > hi and hi > lo:  # the end, or beyond it: the last batch tells (see the module's notes)
                self.probing[tp.partition] = have
                self.probe_seen.pop(tp.partition, None)
                tp.offset = hi - 1
                self.position[tp.partition] = have
            elif have > hi:
                self._restart(tp.partition, f"offset {have:,} is beyond its end (the topic was recreated?)")
                tp.offset = lo
            else:
                tp.offset = have
                self.position[tp.partition] = have
        consumer.assign(partitions)

    def _restart(self, part: int, why: str) -> None:
        self.notes.append(f"partition {part}: {why}; read from its first message")
        self.position[part] = self.low.get(part, 0)

    def _on_revoke(self, consumer: Any, partitions: list) -> None:
        for tp in partitions:
            self.assigned.pop(tp.partition, None)
            self.probing.pop(tp.partition, None)

    def _drained(self, idle: bool) -> bool:
        if not idle or self.probing or not (self.assigned or self.targets):
            return False
        if any(self.position.get(p, 0) < hw for p, hw in self.assigned.items()):
            return False
        return not self._others_left()

    def _others_left(self) -> list[int]:
        """Partitions another member holds that have not reached their start watermark in the warehouse; [] once
        they have, or once they stood still for ``wait`` seconds (then the result says so)."""
        others = {p: hw for p, hw in (self.targets or {}).items() if p not in self.assigned and hw > 0}
        if not others:
            return []
        with self.lock:
            stored = stored_offsets(self.wh, self.name, self.topic)
        if self.src.kafka.start == "latest":
            others = {p: hw for p, hw in others.items() if p in stored}
        left = {p: stored.get(p, -1) for p, hw in others.items() if stored.get(p, -1) < hw}
        if left != self.others[0]:
            self.others = (left, time.monotonic())
        elif left and time.monotonic() - self.others[1] > self.wait:
            self.notes.append(f"partition(s) {', '.join(map(str, sorted(left)))}: held by another consumer of group "
                              f"{group_of(self.name, self.src)} that made no progress for {self.wait:.0f}s; not read "
                              "by this run")
            return []
        return sorted(left)

    def _judge_quiet_probes(self) -> None:
        """A probed partition went quiet after its last batch came without reaching the stored offset (or nothing
        came for ``wait`` seconds): that offset is beyond its end."""
        for part, have in list(self.probing.items()):
            seen = self.probe_seen.setdefault(part, -time.monotonic())  # negative: begun, nothing seen yet
            if seen < 0 and time.monotonic() + seen < self.wait:
                continue  # its fetch has not answered yet
            del self.probing[part]
            self._restart(part, f"offset {have:,} is beyond its end (the topic was recreated?)")
            self.consumer.seek(self.ck.TopicPartition(self.topic, part, self.low.get(part, 0)))

    def _probed(self, part: int, msgs: list) -> list:
        """The messages of a probed partition that were not loaded before."""
        have = self.probing.get(part)
        if have is None:
            return msgs
        if any(m.offset() >= have - 1 for m in msgs):
            del self.probing[part]  # the stored offset is the end (or inside the topic): carry on from it
        elif msgs:
            self.probe_seen[part] = time.monotonic()  # its last batch came: quiet from now on means the end
        return [m for m in msgs if m.offset() >= have]

    def batches(self) -> Iterator[tuple[list[tuple[str, Chunk]], Callable[[], None]]]:
        from ..timeutil import utcnow

        waited = time.monotonic()
        idle = False
        while not self.stop.is_set():
            if self.drain and self._drained(idle):
                return
            msgs = self.consumer.consume(self.src.kafka.batch, timeout=0.5)
            idle = not msgs
            if msgs:
                self.down_since = None
            elif self.drain and self.down_since is not None:
                self._reach(self.down_since)  # every broker went away: back within the timeout, or one line
            if idle and self.probing:
                self._judge_quiet_probes()
            # a fetch holds about a megabyte per partition: gather up to a batch (or LINGER seconds) so that each
            # transaction carries many messages
            until = time.monotonic() + LINGER
            while msgs and len(msgs) < self.src.kafka.batch and time.monotonic() < until:
                more = self.consumer.consume(self.src.kafka.batch - len(msgs), timeout=max(until - time.monotonic(), 0))
                if not more:
                    break
                msgs.extend(more)
            if not msgs:
                if self.drain and self.targets is None and time.monotonic() - waited > self.wait:
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
            if self.probing:
                by_part = {p: kept for p, ms in by_part.items() if (kept := self._probed(p, ms))}
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
            # a watermark some brokers report behind the end (see the module's notes) never makes lag negative
            out.append((p, have, hi, max(hi - (have if have is not None else lo), 0)))
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
