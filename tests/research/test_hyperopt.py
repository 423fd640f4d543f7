"""Hyperopt: two worker processes share one PostgreSQL study (Optuna's RDB storage)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import optuna
import pytest

from agent.backtest.data import generate_ohlcv
from agent.backtest.execution import BacktestSettings
from agent.cli import main
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
from strategies.dca import DcaParams
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


def test_hyperopt_command_prints_a_pasteable_toml_snippet_and_writes_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "candles.csv"
    generate_ohlcv(2_000, seed=3, interval_s=900).write(data)
    out = tmp_path / "out"
    arguments = ["hyperopt", "--strategy", "dca", "--data", str(data), "--trials", "4"]
    arguments += ["--objective", "profit", "--folds", "2", "--out", str(out)]
    code = main(arguments)
    printed = capsys.readouterr().out
    assert code == 0
    snippet = printed.split("# best parameters (paste into agent.toml)\n", 1)[1]
    table = tomllib.loads(snippet)["strategies"]["dca"]
    assert set(table) == set(DcaParams.search_space())
    DcaParams.model_validate(table)  # loads as agent.toml would
    assert "holdout (400 final candles, never searched)" in printed
    assert (out / "history.png").stat().st_size > 0
    assert (out / "importances.png").stat().st_size > 0


def test_hyperopt_command_names_unusable_data_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["hyperopt", "--strategy", "grid", "--data", str(tmp_path / "none.csv"), "--trials", "1"]
    )
    assert code == 2  # a configuration problem, named
    error = capsys.readouterr().err
    assert "none.csv" in error and "Traceback" not in error


def test_unreachable_storage_is_named_without_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "candles.csv"
    generate_ohlcv(500, seed=3, interval_s=900).write(data)
    secret = "s3cret-Passw0rd"
    storage = f"postgresql://agent:{secret}@127.0.0.1:1/hyperopt"
    arguments = ["hyperopt", "--strategy", "grid", "--data", str(data), "--trials", "1"]
    arguments += ["--storage", storage, "--out", str(tmp_path / "out")]
    code = main(arguments)
    captured = capsys.readouterr()
    assert code == 2
    assert "cannot open the study storage" in captured.err
    assert secret not in captured.err + captured.out and "Traceback" not in captured.err
