"""What each Kwery key / Newhedge token has used: counters, credits, token-bucket rate limits.

`Usage.stats` counts, per key or token: ``requests`` every request carrying it; ``ok_requests``
200 responses delivered in full (normal pages and series, and the faulted pages that still
arrive whole: capped, repeat_cursor, more_no_cursor, bad_rows, lag; not drop or
malformed_json); ``rows`` the rows (Newhedge: points) in those; ``credits_used`` the Kwery
credits charged.
"""

import threading
from collections.abc import Callable


class TokenBucket:
    """Token bucket on an injectable monotonic clock; `take` returns the wait (0 = allowed)."""

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.last = clock()

    def take(self) -> float:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


def zero_stats() -> dict[str, int]:
    return {"requests": 0, "ok_requests": 0, "rows": 0, "credits_used": 0}


class Usage:
    """Thread-safe per-key counters and rate limiters (one bucket per key, made on first use)."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._stats: dict[str, dict[str, int]] = {}
        self._buckets: dict[str, TokenBucket] = {}

    def count(
        self, key: str, *, requests: int = 0, ok: int = 0, rows: int = 0, credits: int = 0
    ) -> int:
        """Add to `key`'s counters; returns its credits used so far."""
        with self._lock:
            st = self._stats.setdefault(key, zero_stats())
            st["requests"] += requests
            st["ok_requests"] += ok
            st["rows"] += rows
            st["credits_used"] += credits
            return st["credits_used"]

    def stats(self, key: str) -> dict[str, int]:
        with self._lock:
            return dict(self._stats.get(key) or zero_stats())

    def credits_used(self, key: str) -> int:
        with self._lock:
            return self._stats.get(key, {}).get("credits_used", 0)

    def reset(self) -> None:
        """Zero every counter, including credits used (a fresh billing cycle)."""
        with self._lock:
            self._stats.clear()

    def rate_wait(self, key: str, rate: float, burst: float) -> float:
        """Take a token from `key`'s bucket: 0 if allowed, else seconds until one is back."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(rate, burst, self._monotonic)
            return bucket.take()
