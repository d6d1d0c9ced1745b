"""Ingest worker processes: ``wv realtime run --workers N`` starts N group members.

Each worker is its own process (the Python work of decoding is CPU-bound), joins the same
consumer group and so shares the partitions. SIGTERM/SIGINT are forwarded; each worker drains
its in-flight batch and commits before exiting. A worker that dies unexpectedly is restarted
after a short pause (its uncommitted messages are re-read by whoever owns them next). A
supervisor that dies without forwarding anything (SIGKILL, OOM) takes its workers with it: the
kernel sends each a SIGTERM, so no orphan keeps its partitions beside a restarted supervisor's.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from dataclasses import replace

from foundation.settings import LoggingSettings
from realtime import metrics
from realtime.ingest.worker import IngestConfig, IngestWorker

log = logging.getLogger(__name__)


def _install_stop_handlers(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        log.info("signal %d: draining and stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_worker(config: IngestConfig, *, metrics_host: str = "127.0.0.1", metrics_port: int = 0) -> None:
    """Run one worker in this process until SIGTERM/SIGINT."""
    stop = threading.Event()
    _install_stop_handlers(stop)
    metrics.serve_metrics(metrics_host, metrics_port)
    IngestWorker(config, stop).run()


PR_SET_PDEATHSIG = 1


def _terminate_with(parent: int) -> bool:
    """Have the kernel SIGTERM this process when ``parent`` dies (Linux); False if it already has."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    return os.getppid() == parent


def _child(
    config: IngestConfig, logs: LoggingSettings, metrics_host: str, metrics_port: int, parent: int
) -> None:
    logs.configure_logging()
    if not _terminate_with(parent):
        log.warning("supervisor %d gone before worker %s started; exiting", parent, config.client_id)
        return
    run_worker(config, metrics_host=metrics_host, metrics_port=metrics_port)


def run_workers(
    config: IngestConfig,
    workers: int,
    *,
    logs: LoggingSettings,
    metrics_host: str = "127.0.0.1",
    metrics_port: int = 0,
    restart_delay_s: float = 2.0,
) -> int:
    """Start ``workers`` processes and supervise them until SIGTERM/SIGINT; returns an exit code."""
    if workers == 1:
        run_worker(config, metrics_host=metrics_host, metrics_port=metrics_port)
        return 0
    metrics.check_ports(metrics_host, [metrics_port + i if metrics_port else 0 for i in range(workers)])
    stop = threading.Event()
    _install_stop_handlers(stop)
    ctx = mp.get_context("spawn")

    def start(index: int) -> mp.process.BaseProcess:
        child_config = replace(config, client_id=f"{config.client_id}-{index}")
        port = metrics_port + index if metrics_port else 0
        proc = ctx.Process(
            target=_child,
            args=(child_config, logs, metrics_host, port, os.getpid()),
            name=f"wv-ingest-{index}",
        )
        proc.start()
        return proc

    procs = {i: start(i) for i in range(workers)}
    while not stop.wait(0.5):
        for index, proc in list(procs.items()):
            if not proc.is_alive():
                log.error("worker %d exited (%s); restart in %.0f s", index, proc.exitcode, restart_delay_s)
                if stop.wait(restart_delay_s):
                    break
                procs[index] = start(index)
    for proc in procs.values():
        if proc.is_alive() and proc.pid is not None:
            proc.terminate()  # SIGTERM: the worker drains and commits
    deadline = time.monotonic() + config.drain_timeout_s + 10
    for proc in procs.values():
        proc.join(max(0.1, deadline - time.monotonic()))
        if proc.is_alive():
            log.error("worker %s did not stop in time; killing it (its batch is re-read later)", proc.name)
            proc.kill()
            proc.join()
    failed = [abs(p.exitcode or 0) for p in procs.values() if p.exitcode not in (0, -signal.SIGTERM)]
    return max(failed, default=0)
