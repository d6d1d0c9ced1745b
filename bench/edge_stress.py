"""Edge start/stop under load: does every `wv edge run` stop within its deadline?

    python -m bench.edge_stress [--quick] [--rounds N] [--parallel P] [--deadline S]

Each round starts one edge (``wv edge run --config``: a synthetic camera at 30 fps, the shipped
models, an ONNX Runtime engine on every core) on a private Tansu broker and, while it runs:

- four threads scrape its ``/metrics`` and ``/healthz`` without pause;
- a second edge of the same facility starts on the same outbox: it must exit 2, naming the lock;
- a churn thread creates and deletes topics on the broker all along (metadata changes under the
  producer, as when ``wv realtime run`` creates ``wv.dead-letter``);
- after a random delay (during start-up too) the harness sends SIGTERM (one round in four
  SIGINT; one in five a second signal 50 ms after the first);
- one round in three writes its output to a pipe that nobody reads (a 4 KiB pipe, full after a
  few dozen log lines), as an edge started in the background by a tool that stopped reading it.

An edge that has not exited ``--deadline`` seconds after the signal counts as hung: every thread
of it is dumped with ``py-spy dump`` into ``$WV_STATE_DIR/bench/edge_stress/hang-<round>.txt``, then
it is killed. ``--parallel`` rounds run at once (more load, more interleavings). The baseline is
the same start/stop without scrapes, contention or churn. With ``--rounds`` the quick and full
runs differ only in how many rounds they run.

``--switch-interval S`` amplifies thread interleavings: each edge runs with
``sys.setswitchinterval(S)`` (a ``sitecustomize`` on its ``PYTHONPATH``), so the interpreter lock
changes hands at almost every check and a thread preempted inside a short critical section stays
there while the others run; a race that needs a signal to land in that section (issue 24's)
shows up in tens of rounds instead of thousands.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import itertools
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench._report import write_report
from bench.reliability.faults import Broker
from realtime import kafka
from wv.services.base import free_port

WV = [sys.executable, "-c", "from wv.cli import main; main()"]
ROOT = Path(__file__).resolve().parents[1]
SCRAPERS = 4
CONTENDER_TIMEOUT_S = 60.0


@dataclass
class Round:
    index: int
    signal_after_s: float
    signal: signal.Signals
    twice: bool
    undrained: bool = False
    """Its stdout/stderr is a pipe nobody reads."""
    stop_s: float | None = None
    """Signal to exit; None when the edge hung (killed after the deadline)."""
    exit_code: int | None = None
    started: bool = False
    """The edge had logged *edge service started* before the signal."""
    contender: str = "-"
    """refused (exit 2 naming the lock) | accepted (a second owner: a bug) | hung | skipped."""
    scrapes: int = 0
    scrape_errors: int = 0
    dump: Path | None = None
    summary: str = ""


@dataclass
class Totals:
    rounds: list[Round] = field(default_factory=list)
    lock = threading.Lock()

    def add(self, r: Round) -> None:
        with self.lock:
            self.rounds.append(r)


def edge_config(home: Path, facility: str, bootstrap: str, prefix: str, port: int) -> Path:
    """An edge.yaml for one round (its outbox under ``home``, shared by the round's two edges)."""
    config: dict[str, Any] = {
        "facility": facility,
        "cameras": [{"id": "cam-1", "source": "synthetic://seed=3&fps=30"}],
        "outbox": {"path": str(home / "outbox"), "sync": OUTBOX_SYNC},
        "transport": {
            "kafka_bootstrap": bootstrap,
            "topic_prefix": prefix,
            "timeout_s": 2.0,
            "breaker_failures": 2,
            "breaker_reset_s": 1.0,
            "backoff_cap_s": 1.0,
        },
        "metrics": {"port": port},
        "state_dir": str(home / "state"),
    }
    path = home / f"edge-{port}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


OUTBOX_SYNC = True
"""--no-sync: outbox writes without fsync (the default, fsync per write, is what `wv edge run` does)."""
SWITCH_INTERVAL: float | None = None
"""Set by --switch-interval: every edge's sys.setswitchinterval."""


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WV_")}
    env.update({"WV_STATE_DIR": str(home / "state"), "WV_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"})
    if SWITCH_INTERVAL is not None:
        site = home / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(f"import sys\nsys.setswitchinterval({SWITCH_INTERVAL!r})\n")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), str(ROOT), env.get("PYTHONPATH")) if p)
    return env


F_SETPIPE_SZ = 1031
UNDRAINED_PIPE_BYTES = 4096


def start_edge(
    config: Path, log: Path, env: dict[str, str], undrained: bool = False
) -> subprocess.Popen[bytes]:
    """`wv edge run`, its output appended to `log`, or (`undrained`) to a 4 KiB pipe never read and
    three quarters full from the start (what a reader that stopped reading left behind)."""
    read_end = write_end = -1
    if undrained:
        read_end, write_end = os.pipe()
        fcntl.fcntl(write_end, F_SETPIPE_SZ, UNDRAINED_PIPE_BYTES)
        os.write(write_end, b"." * (UNDRAINED_PIPE_BYTES * 3 // 4))
    try:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [*WV, "edge", "run", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=write_end if undrained else out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,
            )
    finally:
        if undrained:
            os.close(write_end)
    if undrained:
        UNREAD[proc.pid] = read_end  # kept open (never read) until the edge is gone
    return proc


UNREAD: dict[int, int] = {}
"""Read ends of the undrained pipes, by edge pid."""


def release(proc: subprocess.Popen[bytes]) -> None:
    fd = UNREAD.pop(proc.pid, None)
    if fd is not None:
        os.close(fd)


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            r.read()
        return True
    except OSError:
        return False


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def dump_threads(pid: int, path: Path) -> None:
    """Every thread's Python stack (``py-spy dump``); native frames too when py-spy can read them."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    try:
        out = subprocess.run(
            [py_spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60, check=False
        )
        text = out.stdout + out.stderr
    except (OSError, subprocess.SubprocessError) as exc:
        text = f"py-spy failed: {exc}"
    path.write_text(text)


def scrape_loop(port: int, stop: threading.Event, running: threading.Event, counts: Counter[str]) -> None:
    """Scrape until `stop`; failures count only while the edge is `running` (started, not signalled)."""
    paths = itertools.cycle(("/metrics", "/metrics", "/metrics", "/healthz"))
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{next(paths)}", timeout=2) as r:
                r.read()
            counts["ok"] += 1
        except urllib.error.HTTPError:
            counts["ok"] += 1  # an answer (503 while stalled or stopping) is still an answer
        except OSError:
            if running.is_set():
                counts["error"] += 1
            stop.wait(0.05)


def churn_topics(bootstrap: str, prefix: str, stop: threading.Event, counts: Counter[str]) -> None:
    """Create and delete topics on the broker until `stop` (metadata changes under the producers)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = None
    for i in itertools.count():
        if stop.wait(0.5):
            break
        try:
            if admin is None:
                admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="wv-stress-churn")
            admin.create_topics([NewTopic(f"{prefix}churn-{i}", 1, 1)])
            counts["created"] += 1
            if i >= 3:
                admin.delete_topics([f"{prefix}churn-{i - 3}"])
                counts["deleted"] += 1
        except Exception:  # a broker refusing one admin call must not end the churn
            counts["errors"] += 1
            if admin is not None:
                with contextlib.suppress(Exception):
                    admin.close()
            admin = None
    if admin is not None:
        with contextlib.suppress(Exception):
            admin.close()


def run_round(
    r: Round,
    work: Path,
    bootstrap: str,
    prefix: str,
    deadline_s: float,
    dumps: Path,
    loaded: bool,
) -> Round:
    home = work / f"round-{r.index}"
    home.mkdir(parents=True)
    facility = f"FAC-S{r.index:03d}"
    env = environment(home)
    port = free_port()
    log = home / "edge.log"
    proc = start_edge(edge_config(home, facility, bootstrap, prefix, port), log, env, r.undrained)
    stop_scrapes, running = threading.Event(), threading.Event()
    counts: Counter[str] = Counter()
    scrapers = [
        threading.Thread(target=scrape_loop, args=(port, stop_scrapes, running, counts), daemon=True)
        for _ in range(SCRAPERS if loaded else 0)
    ]
    for t in scrapers:
        t.start()
    contender: subprocess.Popen[bytes] | None = None
    contender_at = random.uniform(0.5, max(0.6, r.signal_after_s)) if loaded else None
    t0 = time.monotonic()
    while (elapsed := time.monotonic() - t0) < r.signal_after_s and proc.poll() is None:
        if contender is None and contender_at is not None and elapsed >= contender_at:
            second = edge_config(home, facility, bootstrap, prefix, free_port())
            contender = start_edge(second, home / "contender.log", env)
        if not running.is_set() and (
            "edge service started" in log.read_text(errors="replace") or (r.undrained and answers(port))
        ):
            running.set()
        time.sleep(0.02)
    r.started = running.is_set()
    running.clear()
    r.stop_s, r.exit_code, r.dump = stop(proc, r.signal, r.twice, deadline_s, dumps / f"hang-{r.index}.txt")
    stop_scrapes.set()
    for t in scrapers:
        t.join(5)
    r.scrapes, r.scrape_errors = counts["ok"], counts["error"]
    release(proc)
    if contender is not None:
        r.contender = settle_contender(contender, home / "contender.log", deadline_s, dumps, r.index)
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("edge stopped")]
    r.summary = lines[-1] if lines else ""
    if r.dump is not None:
        shutil.copy(log, dumps / f"hang-{r.index}.log")
    return r


def stop(
    proc: subprocess.Popen[bytes], sig: signal.Signals, twice: bool, deadline_s: float, dump: Path
) -> tuple[float | None, int | None, Path | None]:
    """Signal `proc` (twice: again 50 ms later); (seconds to exit, exit code, None), or after the
    deadline (None, None, the py-spy dump) with the process killed."""
    signalled = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(sig)
        if twice:
            time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
    code = wait_exit(proc, deadline_s)
    if code is None:
        dump_threads(proc.pid, dump)
        proc.kill()
        proc.wait(15)
        return None, None, dump
    return time.monotonic() - signalled, code, None


def settle_contender(
    proc: subprocess.Popen[bytes], log: Path, deadline_s: float, dumps: Path, index: int
) -> str:
    """How the second edge on the round's outbox ended: `refused` (exit 2 naming the lock) while
    the first held it, `took over` when it started after the first had let go (then it is stopped
    like any edge), `hung` when either did not happen in time."""
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < CONTENDER_TIMEOUT_S:
        if "edge service started" in log.read_text(errors="replace"):
            stopped, _, _ = stop(
                proc, signal.SIGTERM, False, deadline_s, dumps / f"contender-hang-{index}.txt"
            )
            return "took over" if stopped is not None else "hung"
        time.sleep(0.05)
    code = proc.poll()
    if code is None:
        dump_threads(proc.pid, dumps / f"contender-hang-{index}.txt")
        proc.kill()
        proc.wait(15)
        return "hung"
    if code == 2 and "lock" in log.read_text(errors="replace"):
        return "refused"
    return f"exit {code}"


def plan(rounds: int, max_delay_s: float, seed: int, undrained: bool = True) -> list[Round]:
    rng = random.Random(seed)
    return [
        Round(
            index=i,
            signal_after_s=rng.uniform(0.3, max_delay_s),
            signal=signal.SIGINT if rng.random() < 0.25 else signal.SIGTERM,
            twice=rng.random() < 0.2,
            undrained=undrained and i % 3 == 2,
        )
        for i in range(rounds)
    ]


def run_all(
    rounds: list[Round],
    work: Path,
    bootstrap: str,
    prefix: str,
    deadline_s: float,
    dumps: Path,
    parallel: int,
    loaded: bool,
) -> list[Round]:
    pending = list(rounds)
    done: list[Round] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                r = pending.pop(0)
            result = run_round(r, work, bootstrap, prefix, deadline_s, dumps, loaded)
            with lock:
                done.append(result)
                status = "HUNG" if result.stop_s is None else f"{result.stop_s:.1f}s exit {result.exit_code}"
                print(
                    f"  round {result.index}{' (output not read)' if result.undrained else ''}: "
                    f"{result.signal.name}{'x2' if result.twice else ''} after "
                    f"{result.signal_after_s:.1f}s ({'running' if result.started else 'starting'}): "
                    f"{status}; contender {result.contender}",
                    flush=True,
                )

    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(done, key=lambda r: r.index)


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="8 rounds instead of 40 (about a minute)")
    parser.add_argument("--rounds", type=int, help="rounds under load (default 40, --quick 8)")
    parser.add_argument("--parallel", type=int, default=2, help="rounds running at once (default 2)")
    parser.add_argument(
        "--deadline", type=float, default=25.0, help="seconds an edge may take to stop (default 25)"
    )
    parser.add_argument("--max-delay", type=float, default=8.0, help="latest signal after start (s)")
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--no-sync", action="store_true", help="outbox writes without fsync")
    parser.add_argument(
        "--switch-interval", type=float, help="sys.setswitchinterval of every edge (e.g. 1e-6)"
    )
    args = parser.parse_args()
    global SWITCH_INTERVAL, OUTBOX_SYNC
    SWITCH_INTERVAL = args.switch_interval
    OUTBOX_SYNC = not args.no_sync
    n = args.rounds or (8 if args.quick else 40)
    state = Path(os.environ.get("WV_STATE_DIR", ".local"))
    dumps = state / "bench" / "edge_stress"
    dumps.mkdir(parents=True, exist_ok=True)
    for old in dumps.glob("*hang-*"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="wv-edge-stress-") as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker")
        broker.start()
        prefix = "stress."
        kafka.ensure_topics(broker.bootstrap, [f"{prefix}detections"], partitions=3)
        try:
            print(f"baseline: {max(2, n // 8)} unloaded rounds", flush=True)
            base = run_all(
                plan(max(2, n // 8), args.max_delay, args.seed + 1, undrained=False),
                work / "baseline",
                broker.bootstrap,
                prefix,
                args.deadline,
                dumps,
                1,
                loaded=False,
            )
            stop_churn = threading.Event()
            churn: Counter[str] = Counter()
            churner = threading.Thread(
                target=churn_topics, args=(broker.bootstrap, prefix, stop_churn, churn), daemon=True
            )
            churner.start()
            print(f"under load: {n} rounds, {args.parallel} at a time", flush=True)
            t0 = time.monotonic()
            loaded = run_all(
                plan(n, args.max_delay, args.seed),
                work / "loaded",
                broker.bootstrap,
                prefix,
                args.deadline,
                dumps,
                args.parallel,
                loaded=True,
            )
            wall = time.monotonic() - t0
            stop_churn.set()
            churner.join(10)
        finally:
            broker.kill()
    report(loaded, base, churn, wall, args.deadline, dumps)


def report(
    loaded: list[Round], base: list[Round], churn: Counter[str], wall: float, deadline: float, dumps: Path
) -> None:
    hung = [r for r in loaded if r.stop_s is None]
    stops = [r.stop_s for r in loaded if r.stop_s is not None]
    base_stops = [r.stop_s for r in base if r.stop_s is not None]
    codes = Counter(r.exit_code for r in loaded if r.exit_code is not None)
    contenders = Counter(r.contender for r in loaded)
    metrics = {
        "starts": float(len(loaded)),
        "stopped_in_deadline": float(len(stops)),
        "hangs": float(len(hung)),
        "hangs_output_not_read": float(sum(r.undrained for r in hung)),
        "rounds_output_not_read": float(sum(r.undrained for r in loaded)),
        "exit_nonzero": float(sum(n for c, n in codes.items() if c != 0)),
        "stop_median_s": round(statistics.median(stops), 2) if stops else float("nan"),
        "stop_p95_s": round(_quantile(stops, 0.95), 2),
        "stop_max_s": round(max(stops), 2) if stops else float("nan"),
        "signalled_while_starting": float(sum(not r.started for r in loaded)),
        "contender_refused": float(contenders["refused"]),
        "contender_took_over": float(contenders["took over"]),
        "contender_hung_or_failed": float(
            sum(n for k, n in contenders.items() if k not in ("refused", "took over", "-"))
        ),
        "scrapes": float(sum(r.scrapes for r in loaded)),
        "scrape_errors": float(sum(r.scrape_errors for r in loaded)),
        "topics_created": float(churn["created"]),
        "topics_deleted": float(churn["deleted"]),
        "wall_s": round(wall, 1),
        "deadline_s": deadline,
        "switch_interval_s": SWITCH_INTERVAL or 0.0,
    }
    baseline = {
        "starts": float(len(base)),
        "hangs": float(sum(r.stop_s is None for r in base)),
        "stop_median_s": round(statistics.median(base_stops), 2) if base_stops else float("nan"),
        "stop_max_s": round(max(base_stops), 2) if base_stops else float("nan"),
    }
    rows = [
        {
            "run": "under load",
            "starts": len(loaded),
            "hangs": f"{len(hung)} ({sum(r.undrained for r in hung)} of {sum(r.undrained for r in loaded)} "
            "with output not read)",
            "exit codes": ", ".join(f"{c}: {n}" for c, n in sorted(codes.items())),
            "stop median / p95 / max (s)": (
                f"{metrics['stop_median_s']} / {metrics['stop_p95_s']} / {metrics['stop_max_s']}"
            ),
            "contender refused / took over / other": (
                f"{contenders['refused']} / {contenders['took over']} / {int(metrics['contender_hung_or_failed'])}"
            ),
            "scrapes (errors)": f"{int(metrics['scrapes'])} ({int(metrics['scrape_errors'])})",
            "topics created / deleted": f"{churn['created']} / {churn['deleted']}",
        },
        {
            "run": "baseline (no load)",
            "starts": len(base),
            "hangs": int(baseline["hangs"]),
            "exit codes": ", ".join(
                f"{c}: {n}"
                for c, n in sorted(Counter(r.exit_code for r in base if r.exit_code is not None).items())
            ),
            "stop median / p95 / max (s)": (
                f"{baseline['stop_median_s']} / {round(_quantile(base_stops, 0.95), 2)} / {baseline['stop_max_s']}"
            ),
            "contender refused / took over / other": "-",
            "scrapes (errors)": "-",
            "topics created / deleted": "-",
        },
    ]
    write_report("edge_stress", metrics, baseline, rows)
    for r in hung:
        print(f"\nround {r.index} hung; threads in {r.dump}")
        if r.dump is not None and r.dump.exists():
            print("\n".join(r.dump.read_text().splitlines()[:40]))
    if hung:
        print(f"\n{len(hung)} of {len(loaded)} edges did not stop within {deadline:.0f} s (dumps in {dumps})")


if __name__ == "__main__":
    main()
