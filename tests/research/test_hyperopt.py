"""Hyperopt: two worker processes share one PostgreSQL study (Optuna's RDB storage)."""

from __future__ import annotations

import tomllib

import optuna

from agent.backtest.data import generate_ohlcv
from agent.backtest.execution import BacktestSettings
from agent.research.hyperopt import (
    SearchSetup,
    best_params,
    create_study,
    out_of_sample_score,
    run_parallel,
    split_holdout,
    sync_url,
    toml_snippet,
)
from strategies.grid import GridParams
from tests.pg import PostgresServer


def test_two_workers_share_one_postgresql_study(postgres: PostgresServer) -> None:
    candles, holdout = split_holdout(generate_ohlcv(3_000, seed=5, interval_s=900), 0.2)
    assert holdout is not None and len(holdout) == 600
    setup = SearchSetup("grid", candles, BacktestSettings(), "profit", folds=2)
    url = sync_url(postgres.create_database("hyperopt_shared"))
    trials = 8

    ran = run_parallel(setup, url, "grid-shared", trials, jobs=2, seed=1)

    study = optuna.load_study(study_name="grid-shared", storage=url)
    assert ran == trials
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(trials))  # no duplicate, none missing
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # both processes took trials from the one study
    assert len({t.user_attrs["worker_pid"] for t in study.trials}) == 2
    # the best parameters rebuilt from the study score exactly what the study recorded
    best = best_params(setup, study)
    assert out_of_sample_score(setup, best) == study.best_value
    # and the TOML snippet loads back into the same GridParams
    table = tomllib.loads(toml_snippet("grid", study.best_trial.params))["strategies"]["grid"]
    assert GridParams.model_validate({**table, "enabled": True}) == best
    # a later run adds to the same study instead of starting over
    assert run_parallel(setup, url, "grid-shared", 2, jobs=1, seed=9) == 2
    assert len(create_study(url, "grid-shared").trials) == trials + 2
