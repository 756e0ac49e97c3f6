"""How many requests a client keeps in flight when it fetches concurrently.

Additive increase, multiplicative decrease: a 429 halves the limit and holds every request
until its Retry-After has passed (the API asked *us* to wait, not one thread); answers that come
back clean raise it again by one per `recover_after` in a row, up to the configured maximum.
Waits end early when `stop` is set, so a failed or interrupted fetch winds down at once.
"""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Stopped(Exception):
    """The fetch was stopped (another day failed, or the run is being stopped)."""


class AdaptiveLimit:
    def __init__(
        self,
        maximum: int,
        *,
        recover_after: int = 20,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if maximum < 1:
            raise ValueError(f"the concurrency must be >= 1, got {maximum!r}")
        self.maximum = maximum
        self.limit = maximum
        self.recover_after = recover_after
        self.stop = stop if stop is not None else threading.Event()
        self._clock = clock
        self._in_flight = 0
        self._clean = 0
        self._hold_until = 0.0
        self._changed = threading.Condition()
        self.lowest = maximum  # the lowest limit reached (for the run's metadata and tests)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the `limit` request slots for the duration of one attempt."""
        with self._changed:
            while True:
                if self.stop.is_set():
                    raise Stopped
                wait = self._hold_until - self._clock()
                if wait <= 0 and self._in_flight < self.limit:
                    break
                # Bounded waits: a stop, a release or the end of a hold is noticed promptly.
                self._changed.wait(min(wait, 0.25) if wait > 0 else 0.25)
            self._in_flight += 1
        try:
            yield
        finally:
            with self._changed:
                self._in_flight -= 1
                self._changed.notify_all()

    def answered(self) -> None:
        """A clean answer: one step towards raising the limit again."""
        with self._changed:
            self._clean += 1
            if self._clean >= self.recover_after and self.limit < self.maximum:
                self.limit += 1
                self._clean = 0
                self._changed.notify_all()

    def rate_limited(self, retry_after: float | None) -> None:
        """A 429: halve the limit; hold every request until `retry_after` seconds from now."""
        with self._changed:
            self.limit = max(1, self.limit // 2)
            self.lowest = min(self.lowest, self.limit)
            self._clean = 0
            if retry_after:
                self._hold_until = max(self._hold_until, self._clock() + retry_after)
