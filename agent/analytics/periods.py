"""Per-period (UTC day or week) summary of an equity curve and its trades.

A period's return is its last equity over the previous period's last (the curve's first point
for the first period). Weeks start on Monday, 00:00 UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Period = Literal["day", "week"]
DAY_S = 86_400
# Beyond this many days a per-day table is too long to read: weeks instead.
MAX_DAY_ROWS = 62


@dataclass(frozen=True, slots=True)
class PeriodRow:
    """``start``: the period's first day (ISO date); PnL in the curve's unit."""

    start: str
    trades: int
    realised_pnl: float
    end_equity: float
    period_return: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_period(first_ts: int, last_ts: int) -> Period:
    """Days for up to :data:`MAX_DAY_ROWS` days, weeks beyond."""
    return "day" if (last_ts - first_ts) // DAY_S < MAX_DAY_ROWS else "week"


def _keys(ts: npt.NDArray[np.int64], period: Period) -> npt.NDArray[np.int64]:
    days: npt.NDArray[np.int64] = ts // DAY_S
    # 1970-01-01 was a Thursday: shifting by 3 days makes weeks start on Monday
    return days if period == "day" else (days + 3) // 7


def _start_label(key: int, period: Period) -> str:
    day = key if period == "day" else key * 7 - 3
    return datetime.fromtimestamp(day * DAY_S, tz=UTC).date().isoformat()


def per_period(
    equity_ts: Sequence[int] | np.ndarray[Any, Any],
    equity: Sequence[float] | np.ndarray[Any, Any],
    trades: Sequence[tuple[int, float | None]],
    period: Period | None = None,
) -> list[PeriodRow]:
    """Rows per period from equity points (``equity_ts`` unix seconds, ascending) and trades
    ``(ts, realised_pnl or None)``; the period is chosen by the span when not given."""
    ts = np.asarray(equity_ts, dtype=np.int64)
    values = np.asarray(equity, dtype=np.float64)
    if ts.size == 0:
        return []
    chosen = period or choose_period(int(ts[0]), int(ts[-1]))
    keys = _keys(ts, chosen)
    # last index of every run of equal keys
    ends = np.append(np.flatnonzero(np.diff(keys)), keys.size - 1)
    trade_ts = np.asarray([t for t, _ in trades], dtype=np.int64)
    trade_keys = _keys(trade_ts, chosen) if trade_ts.size else trade_ts
    pnl_by_key: dict[int, float] = {}
    count_by_key: dict[int, int] = {}
    for key, (_, pnl) in zip(trade_keys.tolist(), trades, strict=True):
        count_by_key[key] = count_by_key.get(key, 0) + 1
        pnl_by_key[key] = pnl_by_key.get(key, 0.0) + (pnl or 0.0)
    rows = []
    previous = float(values[0])
    for end in ends.tolist():
        key = int(keys[end])
        close = float(values[end])
        rows.append(
            PeriodRow(
                start=_start_label(key, chosen),
                trades=count_by_key.get(key, 0),
                realised_pnl=pnl_by_key.get(key, 0.0),
                end_equity=close,
                period_return=close / previous - 1.0 if previous > 0 else None,
            )
        )
        previous = close
    return rows
