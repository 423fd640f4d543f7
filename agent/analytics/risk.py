"""Risk figures from what the agent realised: one-day VaR and CVaR, and a Monte Carlo of trades.

**Daily returns (the input of VaR and CVaR).** The return of a UTC day is the portfolio's last
equity snapshot of that day over the last one of the day before (over the run's first snapshot
for its first day): ``r_d = E_d / E_{d-1} - 1``. Equity snapshots are used rather than daily
realised PnL because equity is marked to market every block: a grid or DCA that holds inventory
while the price falls loses money without realising any, and a VaR of realised PnL would call
that day riskless. Days without a snapshot (the agent was not running) are skipped, so such a
return spans the gap. Returns are taken within one run only (a return across two runs would
compare unrelated portfolios, e.g. a paper and a fork run).

**VaR and CVaR, 95 % and 99 %, one day**, as positive fractions of equity (0.04 = a 4 % loss)
and in USD at the latest equity:

- historical: sort the ``n`` returns, take the ``k = ceil(n * (1 - confidence))`` worst; VaR is
  the loss of the k-th worst day, CVaR (expected shortfall) the mean loss of the k worst days.
- parametric (normal): with the mean ``mu`` and the sample standard deviation ``sigma``
  (``n - 1``) of the returns and ``z`` the standard normal quantile of the confidence,
  ``VaR = sigma * z - mu`` and ``CVaR = sigma * pdf(z) / (1 - confidence) - mu``.

Minimum data: :data:`MIN_DAILY_RETURNS` daily returns (below that a 95 % tail holds no day at
all and the figures are noise); with fewer, the report carries a message saying how many there
are and how many are needed, and no figures.

**Monte Carlo by bootstrap of realised trade returns.** A trade's return is its realised profit
in USD over the equity just before it (the last snapshot at an earlier block; the first
snapshot when there is none). Each of :data:`MC_PATHS` paths draws ``horizon_trades`` returns
with replacement (numpy ``Generator`` seeded with ``seed``: the same seed gives the same
result) and compounds them: ``prod(1 + r) - 1``. Reported: the 5/25/50/75/95th percentiles of
the path returns (as fractions and in USD from the latest equity) and the probability of a loss
(share of paths ending below their start). The horizon defaults to as many trades as were
observed ("another run like this one"). Minimum data: :data:`MIN_TRADES` trades with a realised
USD profit; with fewer, a message and no figures.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from statistics import NormalDist
from typing import Any

MIN_DAILY_RETURNS = 20
MIN_TRADES = 10
MC_PATHS = 10_000
CONFIDENCES = (0.95, 0.99)
PERCENTILES = (5, 25, 50, 75, 95)
# paths x trades drawn at once: keeps memory near 8 MB whatever the horizon
_DRAWS_PER_CHUNK = 1_000_000


@dataclass(frozen=True, slots=True)
class VarLevel:
    """VaR and CVaR at one confidence over one day: positive fractions of equity are losses
    (0.04 = 4 %); ``*_usd`` the same at the latest equity (None when it is unknown)."""

    confidence: float
    historical_var: float
    historical_cvar: float
    parametric_var: float
    parametric_cvar: float
    historical_var_usd: float | None
    historical_cvar_usd: float | None
    parametric_var_usd: float | None
    parametric_cvar_usd: float | None


@dataclass(frozen=True, slots=True)
class VarReport:
    """One-day VaR/CVaR of daily returns; ``levels`` is empty and ``message`` says why when
    there are fewer than ``minimum`` returns."""

    observations: int
    minimum: int
    equity_usd: float | None
    mean_return: float | None
    stdev_return: float | None
    levels: tuple[VarLevel, ...]
    message: str | None
    method: str = "historical and normal over daily equity returns, one-day horizon"

    @property
    def enough_data(self) -> bool:
        return self.message is None

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["levels"] = [asdict(level) for level in self.levels]
        return body


@dataclass(frozen=True, slots=True)
class MonteCarloReport:
    """Bootstrap of realised trade returns; ``percentiles`` maps 5/25/50/75/95 to the path
    return (fraction of equity), ``percentiles_usd`` the same in USD. Empty with a ``message``
    when there are fewer than ``minimum`` trades."""

    trades: int
    minimum: int
    paths: int
    horizon_trades: int
    seed: int
    equity_usd: float | None
    percentiles: dict[int, float]
    percentiles_usd: dict[int, float]
    probability_of_loss: float | None
    message: str | None
    method: str = "bootstrap of realised trade returns, compounded over the horizon"

    @property
    def enough_data(self) -> bool:
        return self.message is None

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        # JSON object keys are strings; "p5" reads better than "5"
        body["percentiles"] = {f"p{p}": v for p, v in self.percentiles.items()}
        body["percentiles_usd"] = {f"p{p}": v for p, v in self.percentiles_usd.items()}
        return body


def daily_returns(points: Sequence[tuple[datetime, float]]) -> list[float]:
    """Returns of each UTC day from equity points ``(taken_at, equity_usd)`` of ONE run (any
    order): the day's last equity over the previous day's last (the first point for the first
    day). Points with a non-positive equity cannot anchor a return and are skipped."""
    ordered = sorted((p for p in points if p[1] > 0), key=lambda p: p[0])
    if not ordered:
        return []
    closes: dict[object, float] = {}
    for taken_at, equity_usd in ordered:
        closes[taken_at.date()] = equity_usd  # the day's last point wins
    returns = []
    previous = ordered[0][1]
    for close in closes.values():
        returns.append(close / previous - 1.0)
        previous = close
    return returns


def _worst(returns: Sequence[float], confidence: float) -> list[float]:
    """The ``ceil(n * (1 - confidence))`` worst returns (at least one), worst first."""
    n = len(returns)
    # the 1e-9 keeps 40 * 0.05 = 2.0000000000000004 at 2 days, not 3
    k = max(1, math.ceil(n * (1.0 - confidence) - 1e-9))
    return sorted(returns)[:k]


def value_at_risk(
    returns: Sequence[float],
    equity_usd: float | None = None,
    confidences: Sequence[float] = CONFIDENCES,
    minimum: int = MIN_DAILY_RETURNS,
) -> VarReport:
    """One-day historical and normal VaR/CVaR of ``returns`` (daily, fractions) at each of
    ``confidences``; USD figures at ``equity_usd``. See the module docstring for the method."""
    n = len(returns)
    if n < minimum:
        return VarReport(
            observations=n,
            minimum=minimum,
            equity_usd=equity_usd,
            mean_return=None,
            stdev_return=None,
            levels=(),
            message=(
                f"too little data for VaR/CVaR: {n} daily return{'s' if n != 1 else ''}, "
                f"at least {minimum} needed (one per UTC day with equity snapshots)"
            ),
        )
    mu = math.fsum(returns) / n
    sigma = math.sqrt(math.fsum((r - mu) ** 2 for r in returns) / (n - 1))
    normal = NormalDist()
    levels = []
    for confidence in confidences:
        worst = _worst(returns, confidence)
        z = normal.inv_cdf(confidence)
        historical_var = -worst[-1]
        historical_cvar = -math.fsum(worst) / len(worst)
        parametric_var = sigma * z - mu
        parametric_cvar = sigma * normal.pdf(z) / (1.0 - confidence) - mu
        levels.append(
            VarLevel(
                confidence=confidence,
                historical_var=historical_var,
                historical_cvar=historical_cvar,
                parametric_var=parametric_var,
                parametric_cvar=parametric_cvar,
                historical_var_usd=_usd(historical_var, equity_usd),
                historical_cvar_usd=_usd(historical_cvar, equity_usd),
                parametric_var_usd=_usd(parametric_var, equity_usd),
                parametric_cvar_usd=_usd(parametric_cvar, equity_usd),
            )
        )
    return VarReport(
        observations=n,
        minimum=minimum,
        equity_usd=equity_usd,
        mean_return=mu,
        stdev_return=sigma,
        levels=tuple(levels),
        message=None,
    )


def _usd(fraction: float, equity_usd: float | None) -> float | None:
    return None if equity_usd is None else fraction * equity_usd


def trade_returns(
    trades: Sequence[tuple[int | None, float]], equity: Sequence[tuple[int | None, float]]
) -> list[float]:
    """Each trade's realised profit (USD) over the equity just before it.

    ``trades`` are ``(block, profit_usd)``; ``equity`` are ``(block, equity_usd)`` snapshots.
    The equity before a trade is the last snapshot at an earlier block (the first snapshot
    when none is earlier or the trade has no block). No positive equity: no returns."""
    marks = sorted((b, e) for b, e in equity if b is not None and e > 0)
    first = next((e for _, e in equity if e > 0), None)
    if first is None:
        return []
    blocks = [b for b, _ in marks]
    returns = []
    for block, profit_usd in trades:
        earlier = 0 if block is None else bisect.bisect_left(blocks, block)
        before = marks[earlier - 1][1] if earlier > 0 else first
        returns.append(profit_usd / before)
    return returns


def monte_carlo(
    returns: Sequence[float],
    equity_usd: float | None = None,
    horizon_trades: int | None = None,
    paths: int = MC_PATHS,
    seed: int = 0,
    minimum: int = MIN_TRADES,
) -> MonteCarloReport:
    """Bootstrap ``paths`` sequences of ``horizon_trades`` trade returns (default: as many as
    observed) from ``returns`` with a numpy Generator seeded by ``seed``; see the module
    docstring. USD figures from ``equity_usd``."""
    n = len(returns)
    if (horizon_trades is not None and horizon_trades < 1) or paths < 1:
        raise ValueError("horizon_trades and paths must be at least 1")
    horizon = n if horizon_trades is None else horizon_trades
    if n < minimum or n == 0:
        return MonteCarloReport(
            trades=n,
            minimum=minimum,
            paths=paths,
            horizon_trades=horizon,
            seed=seed,
            equity_usd=equity_usd,
            percentiles={},
            percentiles_usd={},
            probability_of_loss=None,
            message=(
                f"too little data for Monte Carlo: {n} trade{'s' if n != 1 else ''} with a "
                f"realised USD profit, at least {minimum} needed"
            ),
        )
    import numpy as np

    sample = np.asarray(returns, dtype=np.float64)
    rng = np.random.default_rng(seed)
    outcomes = np.empty(paths, dtype=np.float64)
    rows = max(1, _DRAWS_PER_CHUNK // horizon)
    for start in range(0, paths, rows):
        stop = min(paths, start + rows)
        picks = rng.integers(0, n, size=(stop - start, horizon))
        outcomes[start:stop] = np.prod(1.0 + sample[picks], axis=1) - 1.0
    values = np.percentile(outcomes, PERCENTILES)
    percentiles = {p: float(v) for p, v in zip(PERCENTILES, values, strict=True)}
    return MonteCarloReport(
        trades=n,
        minimum=minimum,
        paths=paths,
        horizon_trades=horizon,
        seed=seed,
        equity_usd=equity_usd,
        percentiles=percentiles,
        percentiles_usd={}
        if equity_usd is None
        else {p: v * equity_usd for p, v in percentiles.items()},
        probability_of_loss=float(np.mean(outcomes < 0.0)),
        message=None,
    )
