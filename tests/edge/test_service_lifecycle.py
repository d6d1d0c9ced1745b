"""Start and stop of the edge service: signals always stop it, a second one ends it at once, a
metrics port in use stops start-up naming its setting, and a recorded file is processed frame by
frame with every drop in the exit summary."""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from edge.metrics import MetricsPortError
from edge.outbox.store import Outbox
from edge.service import EdgeService
from edge.watchdog import EXIT_SHUTDOWN_DEADLINE
from simulator import SimConfig
from simulator.video import write_video


def wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.mark.timeout(60)
def test_a_signal_handled_while_the_main_thread_holds_the_stop_events_lock_still_stops_the_edge(
    edge_config, kafka_bootstrap, topic_prefix
):
    # The old handler set `stop_event`; run inside the main thread's `stop_event.wait()` while that
    # thread held the event's (non-reentrant) lock, it would have waited for that lock forever.
    cfg = edge_config(
        [{"id": "cam-1", "source": "synthetic://seed=61"}],
        transport={"kafka_bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix},
        shutdown={"timeout_s": 10},
    )
    exits: list[int] = []
    service = EdgeService(cfg, hard_exit=exits.append)
    runner = threading.Thread(target=service.run, kwargs={"install_signals": False})
    runner.start()
    wait_for(lambda: service.pipeline.counters["frames"] > 0 if service._started else False, 30)

    with service.stop_event._cond:  # type: ignore[attr-defined]  # what the main thread holds in wait()
        service._on_signal(signal.SIGTERM, None)  # returns: it takes no lock

    wait_for(service.stop_event.is_set, 2)
    service._on_signal(signal.SIGINT, None)  # a second signal while stopping: exit at once
    wait_for(lambda: exits == [EXIT_SHUTDOWN_DEADLINE], 2)
    runner.join(15)
    assert not runner.is_alive()
    assert service.stop_reason == "SIGTERM" and service.exit_code == 0
    assert service.summary().startswith("edge stopped (SIGTERM): ")


def test_a_metrics_port_in_use_stops_start_up_naming_the_setting_before_the_outbox_opens(
    edge_config, tmp_path
):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = edge_config([{"id": "cam-1", "source": "synthetic://seed=62"}], metrics={"port": port})
        with pytest.raises(MetricsPortError, match=rf"127\.0\.0\.1:{port}.*WV_METRICS_PORT.*0 to disable"):
            EdgeService(cfg).start()
    Outbox(cfg.outbox.path, sync=False).close()  # not locked: start-up failed before opening it


@pytest.mark.timeout(90)
def test_a_recorded_file_is_processed_frame_by_frame_and_drops_are_in_the_exit_summary(
    edge_config, kafka_bootstrap, topic_prefix, tmp_path
):
    clip = tmp_path / "clip.avi"
    frames = write_video(clip, 0.6, seed=63, config=SimConfig(fps=25))
    transport = {"kafka_bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix}

    every = EdgeService(edge_config([{"id": "cam-1", "source": f"file://{clip}"}], transport=transport))
    assert every.config.cameras[0].policy == "every"
    every.run(install_signals=False, drain_timeout_s=5)
    assert every.pipeline.counters["frames"] == frames
    assert f"{frames} frames read, {frames} processed, 0 dropped;" in every.summary()

    latest = EdgeService(
        edge_config([{"id": "cam-1", "source": f"file://{clip}", "policy": "latest"}], transport=transport)
    )
    latest.run(install_signals=False, drain_timeout_s=5)
    dropped = frames - latest.pipeline.counters["frames"]
    assert dropped > 0  # read faster than inference: only the newest frame waits
    assert f"{frames} frames read, {frames - dropped} processed, {dropped} dropped (stale" in latest.summary()
