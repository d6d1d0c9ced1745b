"""Log output that can never stop the edge: records go through a bounded queue to one writer thread.

A process writing its log to a pipe that nobody drains (started in the background by a tool whose
output is no longer read, a log shipper that stalled) blocks in ``write()`` once the pipe holds
64 KiB, holding the logging handler's lock, and every other thread that logs then waits for that
lock. In the edge that meant the inference loop stopped at its next warning and a SIGTERM was never
acted on, because the stop path logs *edge service stopping* first. With :class:`NonBlockingLogs`
installed, only the writer thread can block on the output; a record that finds the queue full is
dropped and counted (``dropped``), never waited for.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import threading
import time


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    def __init__(self, records: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(records)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # formatted by the real handlers, on the writer thread

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class NonBlockingLogs:
    """Moves the root logger's handlers behind a bounded queue while installed."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._records: queue.Queue[logging.LogRecord] = queue.Queue(capacity)
        self._handler = _DroppingQueueHandler(self._records)
        self._targets: list[logging.Handler] = []
        self._thread: threading.Thread | None = None

    @property
    def dropped(self) -> int:
        """Records dropped because the output was not keeping up (the queue was full)."""
        return self._handler.dropped

    def install(self) -> None:
        root = logging.getLogger()
        self._targets = [h for h in root.handlers if h is not self._handler]
        for handler in self._targets:
            root.removeHandler(handler)
        root.addHandler(self._handler)
        self._thread = threading.Thread(target=self._write, name="log-writer", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        while True:
            record = self._records.get()
            for handler in self._targets:
                if record.levelno >= handler.level:
                    handler.handle(record)
            self._records.task_done()

    def drain(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the writer to write what is queued; True when it did."""
        deadline = time.monotonic() + timeout_s
        while self._records.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._records.unfinished_tasks

    def uninstall(self, timeout_s: float) -> bool:
        """Give the writer up to `timeout_s` to write what is queued, then put the handlers back.

        False when the output is stuck: the queue then stays in place (a handler writing directly
        would block the caller), and the process should end without flushing its streams."""
        if not self.drain(timeout_s):
            return False
        root = logging.getLogger()
        root.removeHandler(self._handler)
        for handler in self._targets:
            root.addHandler(handler)
        return True
