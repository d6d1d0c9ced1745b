"""Edge outbox: how fast events are made durable, and how fast a backlog drains after an outage.

    python -m bench.edge_outbox [--quick]

Write rate: realistic decision events (~0.6 kB with a 64-d embedding and one anomaly flag in
ten) put one per call (one frame's events) with and without fsync, and 32 per call. Replay
rate: a backlog of N events (the outbox after an outage) drained by the relay into the broker
(`WV_KAFKA_BOOTSTRAP`, fresh topics), anomalies first, until empty. Drain rate: six times that
backlog taken out of the outbox alone, as the relay does. Baselines from the same run: raw RocksDB
puts without the outbox's bookkeeping, the raw Kafka producer sending the same DetectionBatch
payloads without the outbox, and one raw RocksDB iterator deleting the backlog in the same batches.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid

import numpy as np
from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from bench._report import write_report
from contract.proto import warehouse_vision_pb2 as pb
from edge.decisions.events import FrameContext, ModelInfo, anomaly, new_event
from edge.outbox.relay import Relay
from edge.outbox.store import Outbox
from edge.publish.kafka import KafkaTransport
from edge.publish.wire import Outgoing
from edge.retry import Backoff
from foundation.resilience import CircuitBreaker
from wv.settings import PlatformSettings


def make_events(n: int) -> list[pb.DetectionEvent]:
    rng = np.random.default_rng(0)
    ctx = FrameContext(
        "FAC-BENCH", "cam-1", 0, time.time(), ModelInfo("v1", "onnxruntime", "int8"), {"infer_ms": 9.0}
    )
    events = []
    for i in range(n):
        e = new_event(pb.EVENT_KIND_DECISION, ctx, f"trk-{i}")
        e.package_id, e.sku, e.zone, e.expected_zone = f"pkg-{i}", f"SKU-{i % 200:04d}", "lane-a", "lane-a"
        e.embedding.extend(rng.standard_normal(64).astype(np.float32).tolist())
        e.condition, e.condition_confidence, e.frames_observed = pb.CONDITION_OK, 0.97, 90
        if i % 10 == 0:
            e.anomalies.append(
                anomaly(e, "damaged", pb.SEVERITY_WARNING, 0.7, {"p_damaged": 0.7}, time.time())
            )
        events.append(e)
    return events


def write_rate(payloads: list[tuple[bytes, bool]], per_call: int, sync: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        ob = Outbox(tmp, quota_bytes=1 << 40, sync=sync)
        t0 = time.perf_counter()
        for i in range(0, len(payloads), per_call):
            ob.put(payloads[i : i + per_call])
        rate = len(payloads) / (time.perf_counter() - t0)
        ob.close()
    return rate


def raw_rocksdb_rate(payloads: list[tuple[bytes, bool]]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        opts = Options(raw_mode=True)
        db = Rdict(tmp, opts)
        wo = WriteOptions()
        wo.sync = False
        db.set_write_options(wo)
        t0 = time.perf_counter()
        for i, (p, _) in enumerate(payloads):
            db[i.to_bytes(8, "big")] = p
        rate = len(payloads) / (time.perf_counter() - t0)
        db.close()
    return rate


def replay_rate(payloads: list[tuple[bytes, bool]], bootstrap: str, batch: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        ob = Outbox(tmp, quota_bytes=1 << 40, sync=False)
        for i in range(0, len(payloads), 1000):
            ob.put(payloads[i : i + 1000])
        transport = KafkaTransport(bootstrap, "FAC-BENCH", f"bench.{uuid.uuid4().hex[:8]}.", timeout_s=10)
        relay = Relay(
            ob, transport, batch_events=batch, timeout_s=10, breaker=CircuitBreaker(), backoff=Backoff()
        )
        relay.step()  # connect and create the topics outside the timed part
        t0 = time.perf_counter()
        start = len(ob)
        while len(ob):
            relay.step()
        rate = start / (time.perf_counter() - t0)
        transport.close()
        ob.close()
    return rate


def drain_rate(payloads: list[tuple[bytes, bool]], batch: int) -> float:
    """Take a backlog out of the outbox as the relay does (pending + ack per batch), no network."""
    with tempfile.TemporaryDirectory() as tmp:
        ob = Outbox(tmp, quota_bytes=1 << 40, sync=False)
        for i in range(0, len(payloads), 1000):
            ob.put(payloads[i : i + 1000])
        t0 = time.perf_counter()
        while len(ob):
            ob.ack([e.key for e in ob.pending(batch)])
        rate = len(payloads) / (time.perf_counter() - t0)
        ob.close()
    return rate


def raw_rocksdb_drain_rate(payloads: list[tuple[bytes, bool]], batch: int) -> float:
    """One iterator over the whole backlog, deleting in the same batches: the floor for `drain_rate`."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Rdict(tmp, Options(raw_mode=True))
        wo = WriteOptions()
        wo.sync = False
        db.set_write_options(wo)
        for i, (p, _) in enumerate(payloads):
            db[i.to_bytes(8, "big")] = p
        t0 = time.perf_counter()
        it, keys = db.iter(), []
        it.seek_to_first()
        while it.valid():
            keys.append(it.key())
            it.value()
            it.next()
            if len(keys) == batch or not it.valid():
                wb = WriteBatch(raw_mode=True)
                for k in keys:
                    wb.delete(k)
                db.write(wb)
                keys = []
        rate = len(payloads) / (time.perf_counter() - t0)
        db.close()
    return rate


def raw_kafka_rate(events: list[pb.DetectionEvent], bootstrap: str, batch: int) -> float:
    transport = KafkaTransport(bootstrap, "FAC-BENCH", f"bench.{uuid.uuid4().hex[:8]}.", timeout_s=10)
    outgoing = [Outgoing.of(e) for e in events]  # serialised before the clock, as the outbox holds them
    transport.send(outgoing[:batch], 10)
    t0 = time.perf_counter()
    for i in range(0, len(outgoing), batch):
        transport.send(outgoing[i : i + batch], 10)
    rate = len(events) / (time.perf_counter() - t0)
    transport.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="5,000 events instead of 50,000")
    parser.add_argument("--batch", type=int, default=500, help="events per DetectionBatch on replay")
    args = parser.parse_args()
    n = 5_000 if args.quick else 50_000
    events = make_events(n)
    payloads = [(e.SerializeToString(), len(e.anomalies) > 0) for e in events]
    size = float(np.mean([len(p) for p, _ in payloads]))
    synced = payloads[: min(n, 2_000)]
    backlog = payloads * 6  # an outage's worth: where a queue kept in an LSM tree shows its tombstones
    bootstrap = PlatformSettings.load().kafka_bootstrap
    m = {
        "write_1_per_call_fsync_events_s": write_rate(synced, 1, True),
        "write_1_per_call_events_s": write_rate(payloads, 1, False),
        "write_32_per_call_events_s": write_rate(payloads, 32, False),
        "write_32_per_call_fsync_events_s": write_rate(synced, 32, True),
        "replay_events_s": replay_rate(payloads, bootstrap, args.batch),
        "drain_backlog_events_s": drain_rate(backlog, args.batch),
        "event_bytes": size,
    }
    base = {
        "raw_rocksdb_put_events_s": raw_rocksdb_rate(payloads),
        "raw_kafka_send_events_s": raw_kafka_rate(events, bootstrap, args.batch),
        "raw_rocksdb_drain_events_s": raw_rocksdb_drain_rate(backlog, args.batch),
    }
    rows = [
        {
            "measure": "write, 1 event per call, fsync",
            "events/s": f"{m['write_1_per_call_fsync_events_s']:,.0f}",
            "baseline": "",
        },
        {
            "measure": "write, 32 events per call, fsync",
            "events/s": f"{m['write_32_per_call_fsync_events_s']:,.0f}",
            "baseline": "",
        },
        {
            "measure": "write, 1 event per call, no fsync",
            "events/s": f"{m['write_1_per_call_events_s']:,.0f}",
            "baseline": f"raw RocksDB put {base['raw_rocksdb_put_events_s']:,.0f}/s",
        },
        {
            "measure": "write, 32 events per call, no fsync",
            "events/s": f"{m['write_32_per_call_events_s']:,.0f}",
            "baseline": "",
        },
        {
            "measure": f"replay {n:,} events to Kafka ({args.batch}/batch)",
            "events/s": f"{m['replay_events_s']:,.0f}",
            "baseline": f"raw producer {base['raw_kafka_send_events_s']:,.0f}/s",
        },
        {
            "measure": f"drain a backlog of {len(backlog):,} entries (pending + ack, no network)",
            "events/s": f"{m['drain_backlog_events_s']:,.0f}",
            "baseline": f"raw RocksDB, one iterator {base['raw_rocksdb_drain_events_s']:,.0f}/s",
        },
    ]
    print(
        f"{n:,} events of {size:.0f} bytes; broker {bootstrap}; 1-min load average {os.getloadavg()[0]:.2f}"
    )
    write_report("edge_outbox", m, base, rows)


if __name__ == "__main__":
    main()
