"""Which reporting days a mart refresh rewrites per transaction, and which days its SQL reads."""

from __future__ import annotations

from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.mart_inputs import MartInputs
from warehouse.marts import Mart


def week_batches(refresh_days: pa.Table, weeks: int) -> list[pa.Table]:
    """``refresh_days`` split into runs of ``weeks`` whole ISO weeks (Monday to Sunday), in day order.

    A batch never splits an ISO week: weekly rows (funnel weeks, ``active_person_weeks``, calendar
    WAU) are computed from the refresh days of their week. Calendar months can span two batches;
    :func:`scan_range` widens such a batch's scan to the whole month.
    """
    if refresh_days.num_rows == 0:
        return []
    epoch_days = pc.cast(refresh_days["day"], pa.int32()).to_numpy()
    # 1970-01-01 was a Thursday: (epoch day + 3) // 7 numbers the ISO weeks, each from its Monday.
    batch_of = (epoch_days + 3) // 7 // weeks
    return [refresh_days.filter(pa.array(batch_of == batch)) for batch in sorted(set(batch_of.tolist()))]


def scan_range(mart: Mart, inputs: MartInputs, read_days: pa.Table, anchor: date) -> tuple[date, date]:
    """The reporting days a batch's SQL reads (``$first_day``/``$last_day``, inclusive) to recompute
    ``read_days``: their trailing windows, the lookback past the last one and, for calendar months,
    the whole months. When no day reads its window (all counted from state): the empty range
    ``anchor`` .. ``anchor`` - 1 day."""
    if read_days.num_rows == 0:
        return anchor, anchor - timedelta(days=1)
    first_day = pc.min(read_days["day"]).as_py()
    last_day = pc.max(read_days["day"]).as_py()
    scan_from = first_day - timedelta(days=mart.spec.refresh.window_days - 1)
    scan_to = last_day + timedelta(days=inputs.lookback_days)
    if mart.spec.refresh.calendar == "month":
        # A calendar month's count reads the whole month, also when this batch holds part of it.
        next_month = (last_day.replace(day=1) + timedelta(days=31)).replace(day=1)
        scan_from = min(scan_from, first_day.replace(day=1))
        scan_to = max(scan_to, next_month - timedelta(days=1))
    return scan_from, scan_to
