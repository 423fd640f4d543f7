"""``defi-agent hyperopt``: Optuna search of a strategy's parameters, scored out of sample.

Heavy imports (optuna, numpy, matplotlib) happen inside the command, so other commands start fast.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from agent.errors import ConfigError


def hyperopt(
    strategy: Annotated[Literal["grid", "dca"], typer.Option("--strategy", help="Strategy.")],
    data: Annotated[Path, typer.Option("--data", help="OHLCV candles: .csv or .parquet.")],
    trials: Annotated[int, typer.Option("--trials", min=1, help="Trials to run (this machine).")],
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Worker processes.")] = 1,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Shared study storage URL (postgresql://user@host/db: workers on other "
            "machines join the same study). Default: a journal file in --out.",
            envvar="DEFI_AGENT_HYPEROPT_STORAGE",
        ),
    ] = None,
    study_name: Annotated[str | None, typer.Option("--study", help="Study name.")] = None,
    objective: Annotated[
        Literal["sharpe", "sortino", "calmar", "profit"], typer.Option(help="What to maximise.")
    ] = "sharpe",
    seed: Annotated[int, typer.Option(help="Sampler seed (worker i uses seed + i).")] = 0,
    folds: Annotated[int, typer.Option(min=1, help="Walk-forward test windows.")] = 3,
    holdout: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Final share of candles never searched.")
    ] = 0.2,
    params: Annotated[
        Path | None, typer.Option("--params", help="TOML with fixed params ([strategies.NAME]).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for plots and the journal.")] = Path(
        "hyperopt-out"
    ),
) -> None:
    """Search the strategy's declared parameter space; print the results and a TOML snippet."""
    import optuna
    from rich.console import Console
    from rich.table import Table
    from sqlalchemy.exc import SQLAlchemyError

    from agent.backtest.command import _strategy_table
    from agent.backtest.data import load_ohlcv
    from agent.backtest.execution import BacktestSettings
    from agent.research import hyperopt as search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fixed: dict[str, Any] = {}
    settings = BacktestSettings()
    if params is not None:
        try:
            document = tomllib.loads(params.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{params}: {exc}") from exc
        fixed = _strategy_table(document, strategy)
        try:
            settings = BacktestSettings.model_validate(document.get("backtest", {}))
        except ValueError as exc:
            raise ConfigError(f"{params} [backtest]: {exc}") from exc
    try:
        search.make_params(strategy, {}, fixed)
    except ValueError as exc:
        raise ConfigError(f"{params}: {exc}") from exc
    candles, held_out = search.split_holdout(load_ohlcv(data), holdout)
    if len(candles) < 4 * (folds + 1):
        raise ConfigError(f"{data}: too few candles for {folds} walk-forward folds")
    setup = search.SearchSetup(strategy, candles, settings, objective, folds, fixed)
    out.mkdir(parents=True, exist_ok=True)
    url = search.sync_url(storage) if storage else f"journal:{out / 'hyperopt.journal'}"
    name = study_name or f"{strategy}-{objective}"
    console = Console()
    console.print(f"{trials} trials of study {name!r} in {jobs} worker process(es)…")
    try:
        search.run_parallel(setup, url, name, trials, jobs, seed)
    except (SQLAlchemyError, OSError, ImportError) as exc:
        # the storage URL may hold a password: name the failure, never the URL
        reason = type(getattr(exc, "orig", None) or exc).__name__
        raise ConfigError(f"cannot open the study storage ({reason}); check --storage") from None

    study = search.create_study(url, name)
    best = study.best_trial
    table = Table(title=f"hyperopt {strategy}: top trials by out-of-sample {objective}")
    table.add_column("trial", justify="right")
    table.add_column(objective, justify="right")
    names = sorted(best.params)
    for column in names:
        table.add_column(column, justify="right")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    for trial in sorted(done, key=lambda t: -(t.value or search.WORST))[:10]:
        table.add_row(
            str(trial.number),
            f"{trial.value:.4g}",
            *(f"{trial.params.get(column, '-')}" for column in names),
        )
    console.print(table)
    if held_out is not None:
        best_model = search.best_params(setup, study)
        default_model = search.make_params(strategy, {}, fixed)
        best_score = search.score(strategy, held_out, best_model, settings, objective)
        default_score = search.score(strategy, held_out, default_model, settings, objective)
        console.print(
            f"holdout ({len(held_out):,} final candles, never searched): {objective} "
            f"best {best_score:.4g} vs defaults {default_score:.4g}"
        )
    for path in search.write_plots(study, out):
        console.print(f"plot: {path}")
    typer.echo(
        "\n# best parameters (paste into agent.toml)\n" + search.toml_snippet(strategy, best.params)
    )
