"""The one thread that runs the model: a bounded queue, refused at once when full, and stale work dropped.

The model and its Deconvnet are not safe to share between threads, and on a small CPU a
second thread would only slow the first. So every computation is a job on one thread.
A job carries an optional ``key`` (a client and the kind of request, e.g. "tab-3/grid"):
a newer job with the same key makes the older ones stale, and a stale job is answered
``Superseded`` without running when its turn comes.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable

DEFAULT_QUEUE = 8  # jobs waiting at most; more are refused with Busy


class Busy(Exception):
    """The queue is full: the server answers 429 at once instead of piling up work."""


class Superseded(Exception):
    """A newer request with the same key came in before this one ran."""


class ModelWorker:
    """Runs jobs one at a time on a thread of its own.

    >>> worker = ModelWorker(queue_size=2)
    >>> worker.submit(lambda: 6 * 7).result(timeout=5)
    42
    >>> worker.close()
    """

    def __init__(self, queue_size: int = DEFAULT_QUEUE) -> None:
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be a whole number of at least 1, received {queue_size!r}")
        self._jobs: queue.Queue = queue.Queue(maxsize=queue_size)
        self._latest: dict[str, int] = {}
        self._counter = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="deconv-serve-model", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], Any], key: str | None = None) -> Future:
        """Queue ``job``; its Future holds the result, or Busy at once when the queue is full."""
        future: Future = Future()
        with self._lock:
            self._counter += 1
            number = self._counter
            if key is not None:
                self._latest[key] = number
                if len(self._latest) > 1024:  # keys of clients long gone: keep the map bounded
                    self._latest = dict(list(self._latest.items())[-512:])
        try:
            self._jobs.put_nowait((job, key, number, future))
        except queue.Full:
            raise Busy(f"the server is busy ({self._jobs.maxsize} requests waiting); try again in a moment") from None
        return future

    @property
    def waiting(self) -> int:
        return self._jobs.qsize()

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, key, number, future = item
            if not future.set_running_or_notify_cancel():
                continue
            if key is not None and self._latest.get(key, number) > number:
                future.set_exception(Superseded("a newer request from the same page replaced this one"))
                continue
            try:
                future.set_result(job())
            except BaseException as error:  # the job's error goes to its caller; the worker keeps serving
                future.set_exception(error)

    def close(self) -> None:
        """Stop after the jobs already queued."""
        self._jobs.put(None)
        self._thread.join(timeout=30)
