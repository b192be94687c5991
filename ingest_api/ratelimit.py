"""Per-source rate limits per time window, with ``429`` and ``Retry-After``.

Counted in events (a native payload counts as many events as it holds), before any row is built.

Uses the ``limits`` library's sliding-window counter
(https://limits.readthedocs.io/en/stable/strategies.html#sliding-window-counter): two counters per
source, cheap at any rate. With ``EVENTLAKE_REDIS_URL`` the counters live in Redis, shared by every
worker of every node (one Redis round trip per request; exact across nodes); without it, in memory,
so the limit is per worker process: with N uvicorn workers a source can send up to N times it.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from ingest_api.errors import ApiError
from warehouse.settings import SourceConfig


class SourceRateLimiter:
    """Counts each source's events against its limit.

    Args:
        default_limit: limit for sources without their own, e.g. ``"20000/second"``.
        redis_url: where the counters are shared (``redis://…``); ``None``: this process's memory.

    Raises:
        ValueError: a limit string that ``limits.parse`` cannot read.
    """

    def __init__(self, default_limit: str, redis_url: str | None = None) -> None:
        self._default = parse(default_limit)
        self.shared = redis_url is not None
        # A short timeout: a request waits at most this long on a slow Redis before its 503.
        storage = (
            storage_from_string(redis_url, socket_timeout=1, socket_connect_timeout=1) if redis_url else MemoryStorage()
        )
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._items: dict[str, RateLimitItem] = {}

    def _item(self, source: SourceConfig) -> RateLimitItem:
        """The source's limit, parsed once per limit string (a source re-added with another limit gets it)."""
        if not source.rate_limit:
            return self._default
        item = self._items.get(source.rate_limit)
        if item is None:
            item = self._items[source.rate_limit] = parse(source.rate_limit)
        return item

    def check(self, source: SourceConfig, events: int) -> None:
        """Count a request's ``events`` against the source's limit.

        Raises:
            redis.RedisError: the shared counters cannot be reached (the app answers 503).
            ApiError: 429 ``rate_limited`` with a ``Retry-After`` header (whole seconds, at least 1)
                when the window has no room; 413 ``batch_over_rate_limit`` when one request alone
                holds more events than the whole limit (retrying could never succeed).
        """
        item = self._item(source)
        if events > item.amount:
            raise ApiError(413, "batch_over_rate_limit", {"limit": str(item), "events": events, "source": source.name})
        if self._limiter.hit(item, source.name, cost=events):
            return
        reset_at = self._limiter.get_window_stats(item, source.name).reset_time
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise ApiError(
            429,
            "rate_limited",
            {"limit": str(item), "source": source.name, "retry_after_s": retry_after},
            headers={"Retry-After": str(retry_after)},
        )
