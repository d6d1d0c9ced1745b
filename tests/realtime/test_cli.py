"""`wv realtime run`: worker processes sharing the partitions, drained by SIGTERM; centre commands refuse a metrics port in use."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from bench.fixtures.events import EventFactory, detection_batch

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


def _produce(producer, topic: str, events, per_message: int = 5) -> None:
    """Round-robin over the three partitions, so each worker of the group gets some."""
    for i, start in enumerate(range(0, len(events), per_message)):
        value = detection_batch(events[start : start + per_message]).SerializeToString()
        producer.send(topic, value=value, partition=i % 3)
    producer.flush(10)


def test_two_worker_processes_share_the_partitions_and_drain_on_sigterm(
    db, database_url, redis_url, kafka_bootstrap, topic_prefix, ingest_config, producer, wait_for, scalar
):
    env = {
        **os.environ,
        "WV_DATABASE_URL": database_url,
        "WV_REDIS_URL": redis_url,
        "WV_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "WV_KAFKA_TOPIC_PREFIX": topic_prefix,
        "WV_INGEST_GROUP_ID": ingest_config.group_id,
        "WV_METRICS_PORT": "0",
        "WV_LOG_LEVEL": "WARNING",
    }
    events = list(EventFactory("FAC-003", seed=51).stream(60, detections=4))
    _produce(producer, ingest_config.detections_topic, events[:150])
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("wv")), "realtime", "run", "--workers", "2"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        wait_for(lambda: scalar("SELECT count(*) FROM package_detections") == 150, timeout=60)
        _produce(producer, ingest_config.detections_topic, events[150:])
        wait_for(lambda: scalar("SELECT count(*) FROM package_detections") == 300, timeout=60)
        # both workers wrote through a connection of their own (application_name = client id)
        writers = (
            "SELECT count(DISTINCT application_name) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'wv-ingest-%%'"
        )
        wait_for(lambda: scalar(writers) == 2, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0
    assert scalar("SELECT count(DISTINCT event_id) FROM package_detections") == 300
    # everything consumed was committed before the workers left
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=ingest_config.group_id)
    partitions = [TopicPartition(ingest_config.detections_topic, p) for p in range(3)]
    committed = {tp: consumer.committed(tp) for tp in partitions}
    consumer.close(autocommit=False)
    assert committed == {tp: 20 for tp in partitions}  # 60 messages, round-robin: all of them


def _taken_port_after_a_free_one() -> tuple[socket.socket, int]:
    """A listening socket on port P + 1 while P is free (P: the first worker's metrics port)."""
    while True:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port - 1))
            except OSError:
                taken.close()
                continue
        taken.listen()
        return taken, port


@pytest.mark.parametrize("command", [["realtime", "run", "--workers", "2"], ["realtime", "rules"]])
def test_a_metrics_port_in_use_stops_a_centre_process_naming_the_setting(
    command, database_url, kafka_bootstrap
):
    taken, port = _taken_port_after_a_free_one()
    # `run --workers 2` serves on P and P + 1: the taken P + 1 is found before any worker starts
    metrics_port = port - 1 if command[1] == "run" else port
    env = {**os.environ, "WV_DATABASE_URL": database_url, "WV_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "WV_METRICS_PORT": str(metrics_port)}  # fmt: skip
    with taken:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("wv")), *command],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=90,
        )  # fmt: skip
    assert done.returncode != 0
    assert f"WV_METRICS_PORT: cannot serve metrics on 127.0.0.1:{port}" in done.stderr, done.stderr
