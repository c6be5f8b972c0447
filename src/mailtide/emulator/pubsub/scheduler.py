"""A timer thread: run small callables at a given time (delayed notifications, push retries).

Callables run on the timer thread and must be quick; anything slow (an HTTP push) is handed to an
executor by the callable itself. Started lazily on first use; a daemon, so it never blocks exit.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, name: str = "mailtide-emulator-pubsub-timer") -> None:
        self._name = name
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def call_at(self, when: float, action: Callable[[], None]) -> None:
        """Run `action` at monotonic time `when` (at once if it is past)."""
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), action))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def call_later(self, delay: float, action: Callable[[], None]) -> None:
        self.call_at(time.monotonic() + max(0.0, delay), action)

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def stop(self, timeout: float = 5.0) -> None:
        """Drop what is pending and end the thread; a later call_at starts a new one."""
        with self._cond:
            self._stopping = True
            self._heap.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            self._stopping = False
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopping:
                    return
                _, _, action = heapq.heappop(self._heap)
            try:
                action()
            except Exception:
                logger.exception("emulator.pubsub.timer_action_failed")
