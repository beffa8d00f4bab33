"""Service health for the Pipeline page, asked in the background so that no service can stall a page.

`dse status`'s checks ask each service itself, one after the other; a broker that is down
takes Kafka's client about 30 s to give up on. So the page never waits on a probe for more
than a moment: it shows the last completed answer (with its age) while a newer one runs,
and "still asking" only before the first answer is in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

Rows = list[dict[str, str]]


class StatusProbe:
    """Runs ``probe`` in the background, one at a time, at most every ``max_age_s``; hands out its latest answer."""

    def __init__(self, probe: Callable[[], Rows], max_age_s: float) -> None:
        self._probe, self._max_age_s = probe, max_age_s
        self._lock = threading.Lock()
        self._running: Future | None = None
        #: the last completed answer and when it was asked (monotonic seconds)
        self._answer: tuple[Rows, float] | None = None

    def start(self) -> None:
        """Ask for the first answer now, without waiting for it or collecting anything."""
        with self._lock:
            if self._answer is None and self._running is None:
                self._running = self._ask()

    def latest(self, wait_s: float) -> tuple[Rows, float] | None:
        """The newest answer and its age in seconds; waits up to ``wait_s`` only while there is none at all."""
        with self._lock:
            self._collect()
            stale = self._answer is None or time.monotonic() - self._answer[1] > self._max_age_s
            if stale and self._running is None:
                self._running = self._ask()
            running, answer = self._running, self._answer
        if answer is None and running is not None:
            try:
                running.result(timeout=wait_s)
            except FutureTimeout:
                return None
            with self._lock:
                self._collect()
                answer = self._answer
        return None if answer is None else (answer[0], time.monotonic() - answer[1])

    def _ask(self) -> Future:
        """Run the probe in a daemon thread: a probe still waiting on a dead service never holds up shutdown."""
        future: Future = Future()

        def run() -> None:
            asked = time.monotonic()
            try:
                future.set_result((self._probe(), asked))
            except BaseException as exc:  # handed to the page that collects it
                future.set_exception(exc)

        threading.Thread(target=run, name="dse-dashboard-status", daemon=True).start()
        return future

    def _collect(self) -> None:
        """Keep a finished probe's answer (a probe that failed raises its error here, to the page)."""
        if self._running is not None and self._running.done():
            running, self._running = self._running, None
            self._answer = running.result()
