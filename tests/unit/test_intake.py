"""The shared ingest flow's row building, without a server."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from ingest_api.group_commit import GroupCommitWriter
from ingest_api.intake import BUILD_SLICE_S, Intake
from ingest_api.ratelimit import SourceRateLimiter
from warehouse.contract.errors import StructuralError
from warehouse.contract.rows import RequestContext
from warehouse.settings import Settings
from warehouse.sources import SourceRegistry


def test_a_slow_build_gives_the_event_loop_back_to_other_requests(tmp_path: Path) -> None:
    # Regression (breaking the new code): rows built on the event loop held it ~0.3 s for 880 events
    # whose names expand under Unicode normalization; other clients' answers waited 10x longer.
    intake = Intake(
        Settings(data_dir=tmp_path),
        cast(GroupCommitWriter, None),
        cast(SourceRegistry, None),
        SourceRateLimiter("1000/second"),
    )
    ctx = RequestContext(received_at=datetime.now(UTC))

    def slow(item: Any, _ctx: RequestContext, _budget: int) -> list[dict[str, Any]]:
        time.sleep(BUILD_SLICE_S / 2)  # an item that costs half a slice to build
        if item == 3:
            raise StructuralError("bad item", "uuid")
        return [{"payload": "é" * item}]

    async def main() -> tuple[int, tuple[list[dict[str, Any]], list[Any], int]]:
        turns = 0
        done = False

        async def other_request() -> None:
            nonlocal turns
            while not done:
                turns += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(other_request())
        await asyncio.sleep(0)
        built = await intake._build_rows(list(range(40)), ctx, slow)
        done = True
        await other
        return turns, built

    turns, (rows, rejected, size) = asyncio.run(main())
    assert turns >= 10  # 40 items of half a slice: the other request ran about every second item
    assert len(rows) == 39 and [r["index"] for r in rejected] == [3]
    assert size == 2 * sum(i for i in range(40) if i != 3)  # UTF-8 bytes: "é" is 2
