"""Walk-forward evaluation: choose parameters on a training window, score them on the next.

Every fold trains on ``train_size`` candles and tests on the ``test_size`` candles right after
them; the windows roll forward by ``test_size`` (or, anchored, the training window keeps its
start). Test windows never overlap and never precede their training data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from rich.progress import Progress

from agent.backtest.data import Candles
from agent.backtest.engine import RUNNERS
from agent.backtest.execution import BacktestSettings
from agent.backtest.report import result_metrics


@dataclass(frozen=True, slots=True)
class WalkForwardSplit:
    """Candle index ranges ``[start, stop)`` of one fold."""

    fold: int
    train: range
    test: range


def walk_forward_splits(
    n: int, folds: int, train_size: int, test_size: int | None = None, anchored: bool = False
) -> list[WalkForwardSplit]:
    """``folds`` consecutive (train, test) splits over ``n`` candles.

    ``test_size`` defaults to an equal share of what follows the first training window.
    """
    if folds < 1 or train_size < 1:
        raise ValueError("folds and train_size must be at least 1")
    if test_size is None:
        test_size = (n - train_size) // folds
    if test_size < 1 or train_size + folds * test_size > n:
        raise ValueError(
            f"{folds} folds of {test_size} test candles after {train_size} training candles "
            f"do not fit in {n} candles"
        )
    splits = []
    for fold in range(folds):
        test_start = train_size + fold * test_size
        train_start = 0 if anchored else test_start - train_size
        splits.append(
            WalkForwardSplit(
                fold, range(train_start, test_start), range(test_start, test_start + test_size)
            )
        )
    return splits


def walk_forward(
    strategy: str,
    candles: Candles,
    candidates: Sequence[BaseModel],
    settings: BacktestSettings,
    folds: int,
    train_fraction: float = 0.5,
    objective: str = "sharpe",
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Per fold: the candidate with the best ``objective`` on train, and its test metrics.

    ``train_fraction`` of the candles make the first training window; the rest is split into
    ``folds`` test windows. Undefined objectives (no trades) rank last.
    """
    run = RUNNERS[strategy]
    n = len(candles)
    splits = walk_forward_splits(n, folds, max(1, int(n * train_fraction)))
    task = progress.add_task("walk-forward", total=len(splits)) if progress else None
    results: list[dict[str, Any]] = []
    for split in splits:
        train = candles.slice(split.train.start, split.train.stop)
        test = candles.slice(split.test.start, split.test.stop)
        scores = []
        for params in candidates:
            value = result_metrics(run(train, params, settings)).to_dict().get(objective)
            scores.append(value if isinstance(value, float) and math.isfinite(value) else -math.inf)
        best = max(range(len(candidates)), key=lambda i: scores[i])
        tested = result_metrics(run(test, candidates[best], settings))
        results.append(
            {
                "fold": split.fold,
                "train": [int(train.ts[0]), int(train.ts[-1])],
                "test": [int(test.ts[0]), int(test.ts[-1])],
                "chosen": best,
                "train_objective": None if scores[best] == -math.inf else scores[best],
                "test_metrics": tested.to_dict(),
            }
        )
        if progress is not None and task is not None:
            progress.advance(task)
    return results
