"""Optuna over a strategy's declared search space, scored on walk-forward out-of-sample windows.

The objective of a trial is the mean, over ``folds`` consecutive test windows of the search
data, of a metric (Sharpe, Sortino, Calmar or total return "profit") of a backtest that pays
the pool fee, slippage and gas (``BacktestSettings``). Each window is backtested on its own, so
a parameter set is judged on several separate stretches, not one lucky run. A window where the
metric is undefined (no trades) counts as the worst score. A final ``holdout`` share of the
candles is never given to the search: the best parameters and the defaults are compared there.

Parallelism is Optuna's, not ours: every worker is a process calling ``study.optimize`` on the
same storage (a PostgreSQL/SQLite URL, or a local journal file), which hands out trial numbers
atomically. Workers on other machines join by pointing at the same ``--storage`` and
``--study``.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
from pydantic import BaseModel

from agent.backtest.data import Candles
from agent.backtest.engine import RUNNERS
from agent.backtest.execution import BacktestSettings
from agent.backtest.report import result_metrics
from agent.backtest.walkforward import walk_forward_splits
from strategies.base import Choice, FloatRange, IntRange, StrategyParams
from strategies.dca import DcaParams
from strategies.grid import GridParams

Objective = Literal["sharpe", "sortino", "calmar", "profit"]
OBJECTIVES: tuple[Objective, ...] = ("sharpe", "sortino", "calmar", "profit")
PARAMS: dict[str, type[StrategyParams]] = {"grid": GridParams, "dca": DcaParams}
WORST = -1e9  # an undefined score (no trades): finite, so every storage keeps it


@dataclass(frozen=True)
class SearchSetup:
    """What every worker needs to score a trial (picklable: sent to worker processes)."""

    strategy: str
    candles: Candles  # the search data (the holdout already cut off)
    settings: BacktestSettings
    objective: Objective = "sharpe"
    folds: int = 3
    fixed: Mapping[str, Any] | None = None  # parameters set by the user, not searched


def split_holdout(candles: Candles, holdout: float) -> tuple[Candles, Candles | None]:
    """(search data, final holdout segment); no holdout when ``holdout`` is 0."""
    if not 0 <= holdout < 1:
        raise ValueError("holdout must be in [0, 1)")
    if holdout == 0:
        return candles, None
    cut = len(candles) - max(2, int(len(candles) * holdout))
    return candles.slice(0, cut), candles.slice(cut, len(candles))


def make_params(strategy: str, values: Mapping[str, Any], fixed: Mapping[str, Any] | None) -> Any:
    """The strategy's params from searched ``values`` over ``fixed`` ones (enabled)."""
    return PARAMS[strategy].model_validate({**(fixed or {}), **values, "enabled": True})


def score(
    strategy: str,
    candles: Candles,
    params: BaseModel,
    settings: BacktestSettings,
    objective: Objective,
) -> float:
    """One backtest's objective, net of costs; ``WORST`` when undefined."""
    metrics = result_metrics(RUNNERS[strategy](candles, params, settings)).to_dict()
    value = metrics["total_return" if objective == "profit" else objective]
    return float(value) if isinstance(value, float) and math.isfinite(value) else WORST


def out_of_sample_score(setup: SearchSetup, params: BaseModel) -> float:
    """Mean objective over the walk-forward test windows of the search data."""
    n = len(setup.candles)
    splits = walk_forward_splits(n, setup.folds, n // (setup.folds + 1))
    scores = [
        score(
            setup.strategy,
            setup.candles.slice(split.test.start, split.test.stop),
            params,
            setup.settings,
            setup.objective,
        )
        for split in splits
    ]
    return sum(scores) / len(scores)


def suggest(trial: optuna.Trial, strategy: str) -> dict[str, Any]:
    """One value per dimension of the strategy's declared ``search_space()``."""
    values: dict[str, Any] = {}
    for name, dimension in PARAMS[strategy].search_space().items():
        if isinstance(dimension, FloatRange):
            values[name] = trial.suggest_float(
                name, dimension.low, dimension.high, step=dimension.step, log=dimension.log
            )
        elif isinstance(dimension, IntRange):
            values[name] = trial.suggest_int(
                name, dimension.low, dimension.high, step=dimension.step
            )
        elif isinstance(dimension, Choice):
            values[name] = trial.suggest_categorical(name, dimension.options)
    return values


def trial_value(setup: SearchSetup, trial: optuna.Trial) -> float:
    """The objective of one trial (the function Optuna optimises)."""
    values = suggest(trial, setup.strategy)
    trial.set_user_attr("worker_pid", os.getpid())  # which process ran it (shared studies)
    try:
        params = make_params(setup.strategy, values, setup.fixed)
    except ValueError as exc:
        # e.g. a combination the params model refuses: not a score, a pruned point
        raise optuna.TrialPruned(str(exc)) from exc
    return out_of_sample_score(setup, params)


def open_storage(storage: str) -> optuna.storages.BaseStorage | str:
    """A storage URL as is; ``journal:PATH`` is a local multi-process journal file."""
    if storage.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        backend = JournalFileBackend(storage.removeprefix("journal:"))
        return optuna.storages.JournalStorage(backend)
    return storage


def sync_url(url: str) -> str:
    """Optuna's RDB storage is synchronous: a PostgreSQL URL (the agent's asyncpg one, or a
    bare ``postgresql://``, which SQLAlchemy 2.1 maps to psycopg 3) uses psycopg2."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url.removeprefix(prefix)
    return url


def create_study(storage: str, study_name: str) -> optuna.Study:
    return optuna.create_study(
        storage=open_storage(storage),
        study_name=study_name,
        direction="maximize",
        load_if_exists=True,
    )


def run_worker(setup: SearchSetup, storage: str, study_name: str, trials: int, seed: int) -> int:
    """One worker process: ``trials`` trials of the shared study; returns how many it ran."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=study_name,
        storage=open_storage(storage),
        sampler=optuna.samplers.TPESampler(seed=seed),
    )
    ran = 0

    def count(_: optuna.Study, __: optuna.trial.FrozenTrial) -> None:
        nonlocal ran
        ran += 1

    study.optimize(
        lambda trial: trial_value(setup, trial), n_trials=trials, callbacks=[count], n_jobs=1
    )
    return ran


def share(trials: int, jobs: int) -> list[int]:
    """``trials`` split as evenly as possible over ``jobs`` workers (no zero shares)."""
    jobs = max(1, min(jobs, trials))
    return [trials // jobs + (1 if i < trials % jobs else 0) for i in range(jobs)]


def run_parallel(
    setup: SearchSetup, storage: str, study_name: str, trials: int, jobs: int, seed: int
) -> int:
    """``trials`` more trials in the study by ``jobs`` worker processes; returns trials run."""
    create_study(storage, study_name)  # once, before the workers race to load it
    shares = share(trials, jobs)
    if len(shares) == 1:
        return run_worker(setup, storage, study_name, shares[0], seed)
    # spawn: a clean interpreter per worker (no forked DB connections or locks)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(shares), mp_context=context) as pool:
        futures = [
            pool.submit(run_worker, setup, storage, study_name, count, seed + worker)
            for worker, count in enumerate(shares)
        ]
        return sum(future.result() for future in futures)


def best_params(setup: SearchSetup, study: optuna.Study) -> BaseModel:
    """The study's best parameters as the strategy's params model."""
    params: BaseModel = make_params(setup.strategy, study.best_trial.params, setup.fixed)
    return params


def toml_snippet(strategy: str, values: Mapping[str, Any]) -> str:
    """``[strategies.NAME]`` with the searched values, ready to paste into agent.toml."""
    lines = [f"[strategies.{strategy}]"]
    for name, value in sorted(values.items()):
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = f'"{value}"'
        elif isinstance(value, float):
            text = f"{value:.10g}" if "e" not in f"{value:.10g}" else repr(value)
            if "." not in text and "e" not in text:
                text += ".0"
        else:
            text = str(value)
        lines.append(f"{name} = {text}")
    return "\n".join(lines) + "\n"


def write_plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    """history.png (objective per trial and the best so far) and importances.png."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir.mkdir(parents=True, exist_ok=True)
    done = [
        t
        for t in study.trials
        if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None
    ]
    written = []
    figure = Figure(figsize=(9, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    numbers = [t.number for t in done]
    values = [float(t.value) if t.value is not None and t.value > WORST else math.nan for t in done]
    best: list[float] = []
    for value in values:
        previous = best[-1] if best else -math.inf
        best.append(previous if math.isnan(value) else max(previous, value))
    axes.scatter(numbers, values, s=12, label="trial")
    axes.plot(
        numbers, [b if math.isfinite(b) else math.nan for b in best], color="C1", label="best"
    )
    axes.set_xlabel("trial")
    axes.set_ylabel("objective (out of sample)")
    axes.set_title("Optimisation history")
    axes.legend()
    figure.tight_layout()
    path = out_dir / "history.png"
    figure.savefig(path)
    written.append(path)
    if len(done) >= 2:
        try:
            importances = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError):
            importances = {}
        if importances:
            figure = Figure(figsize=(7, 4), dpi=100)
            FigureCanvasAgg(figure)
            axes = figure.add_subplot()
            names = list(importances)[::-1]
            axes.barh(names, [importances[name] for name in names])
            axes.set_xlabel("importance")
            axes.set_title("Parameter importances")
            figure.tight_layout()
            path = out_dir / "importances.png"
            figure.savefig(path)
            written.append(path)
    return written
