"""``defi-agent backtest``: run grid or DCA over OHLCV candles and write a report folder.

Heavy imports (numpy, pandas, matplotlib) happen inside the command, so other CLI commands
start fast.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel, ValidationError

from agent.errors import ConfigError


def _parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` with a TOML value (``levels=20``, ``spacing="geometric"``); bare words are
    strings (``spacing=geometric``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE (got {text!r})")
    try:
        return key, tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        return key, raw.strip()


def _strategy_table(document: dict[str, Any], strategy: str) -> dict[str, Any]:
    """The strategy's table from a params file: ``[strategies.<name>]``, ``[<name>]`` or the top
    level (minus a ``[backtest]`` table)."""
    strategies = document.get("strategies")
    if isinstance(strategies, dict) and isinstance(strategies.get(strategy), dict):
        return dict(strategies[strategy])
    if isinstance(document.get(strategy), dict):
        return dict(document[strategy])
    return {
        key: value
        for key, value in document.items()
        if key not in ("backtest", "strategies") and not isinstance(value, dict)
    }


def _validated(model: type[BaseModel], values: dict[str, Any], where: str) -> BaseModel:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            path = ".".join(str(part) for part in error["loc"])
            problems.append(f"{where}{'.' + path if path else ''}: {error['msg']}")
        raise ConfigError("; ".join(problems)) from exc


def backtest(
    strategy: Annotated[
        Literal["grid", "dca"], typer.Option("--strategy", help="Strategy to backtest.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Report folder (created).")],
    data: Annotated[
        Path | None,
        typer.Option("--data", help="OHLCV candles: .csv or .parquet (timestamp,o,h,l,c[,v])."),
    ] = None,
    synthetic: Annotated[
        int | None,
        typer.Option("--synthetic", min=2, help="Instead of --data: N generated 1-minute candles."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of --synthetic.")] = 7,
    params: Annotated[
        Path | None,
        typer.Option(
            "--params",
            help="TOML with the strategy's table ([strategies.grid] as in agent.toml, [grid] or "
            "top-level keys) and an optional [backtest] table of settings.",
        ),
    ] = None,
    assignments: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Strategy parameter KEY=VALUE (repeatable; wins over --params)."
        ),
    ] = None,
    initial_quote: Annotated[
        str | None, typer.Option(help="Starting quote balance, whole tokens.")
    ] = None,
    initial_base: Annotated[
        str | None, typer.Option(help="Starting base balance, whole tokens.")
    ] = (None),
    fee_pips: Annotated[int | None, typer.Option(help="Pool fee per swap, pips (3000 = 0.3%).")] = (
        None
    ),
    slippage_bps: Annotated[int | None, typer.Option(help="Slippage per swap, bps.")] = None,
    gas_usd: Annotated[float | None, typer.Option(help="Gas cost per swap, USD.")] = None,
    walk_forward_folds: Annotated[
        int, typer.Option("--walk-forward", min=0, help="Also score N walk-forward test folds.")
    ] = 0,
    progress_bar: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Backtest grid or DCA on candles; write report.html (prices and trades, equity against
    buy-and-hold, drawdown, per-period and walk-forward tables), report.json, equity.png,
    drawdown.png and trades.csv."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from agent.backtest.data import generate_ohlcv, load_ohlcv
    from agent.backtest.engine import RUNNERS
    from agent.backtest.execution import BacktestSettings
    from agent.backtest.html import metric_rows
    from agent.backtest.report import result_metrics, write_report
    from agent.backtest.walkforward import walk_forward
    from strategies.dca import DcaParams
    from strategies.grid import GridParams

    if (data is None) == (synthetic is None):
        raise ConfigError("give exactly one of --data FILE or --synthetic N")
    document: dict[str, Any] = {}
    if params is not None:
        try:
            document = tomllib.loads(params.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{params}: {exc}") from exc
    values = _strategy_table(document, strategy)
    values.update(_parse_assignment(text) for text in assignments or [])
    # a backtest runs the strategy whatever agent.toml says about enabling it live
    values["enabled"] = True
    model: type[BaseModel] = GridParams if strategy == "grid" else DcaParams
    strategy_params = _validated(model, values, f"strategies.{strategy}")

    setting_values = dict(document.get("backtest", {}))
    overrides = {
        "initial_quote": initial_quote,
        "initial_base": initial_base,
        "fee_pips": fee_pips,
        "slippage_bps": slippage_bps,
        "gas_usd": gas_usd,
    }
    setting_values.update({k: v for k, v in overrides.items() if v is not None})
    settings = _validated(BacktestSettings, setting_values, "backtest")
    assert isinstance(settings, BacktestSettings)

    console = Console(stderr=True)
    candles = load_ohlcv(data) if data is not None else generate_ohlcv(synthetic or 0, seed=seed)
    source = str(data) if data is not None else f"synthetic:{synthetic}:seed={seed}"
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=console,
        disable=not progress_bar,
    ) as progress:
        result = RUNNERS[strategy](candles, strategy_params, settings, progress=progress)
        folds = None
        if walk_forward_folds:
            folds = walk_forward(
                strategy,
                candles,
                [strategy_params],
                settings,
                walk_forward_folds,
                progress=progress,
            )
    report_path = write_report(result, out, source, folds)
    table = Table(title=f"{strategy} backtest: {len(candles):,} candles")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, value in metric_rows(result_metrics(result), settings.quote_symbol):
        table.add_row(label, value)
    Console().print(table)
    range_exit = result.extra.get("range_exit")
    if range_exit is not None:
        typer.echo(f"range exit: the grid stopped at candle {range_exit['candle']:,}: "
                   f"{range_exit['reason']}")  # fmt: skip
    typer.echo(f"report: {report_path.parent / 'report.html'}")
