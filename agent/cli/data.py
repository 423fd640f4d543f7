"""`download-data`: exchange candles into Parquet files for backtests (incremental, resumable)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from agent.errors import AgentError, ConfigError


def _epoch_ms(value: str | None, option: str) -> int | None:
    """``2024-01-01``, ``2024-01-01T12:00`` (UTC unless it says otherwise) or epoch ms."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option}: expected a date like 2024-01-01, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def download_data(
    symbols: Annotated[
        list[str], typer.Option("--symbol", help="ccxt symbol, e.g. ETH/USDT (repeatable).")
    ],
    exchange: Annotated[str, typer.Option(help="ccxt exchange id.")] = "binance",
    timeframe: Annotated[str, typer.Option(help="Candle length: 1m, 5m, 1h, 1d ...")] = "1h",
    since: Annotated[
        str | None,
        typer.Option(help="First candle (UTC date or epoch ms); needed only for a new file."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Stop before this time (default: the last closed candle).")
    ] = None,
    data_dir: Annotated[
        Path, typer.Option(help="Files go to DIR/EXCHANGE/BASE_QUOTE-TIMEFRAME.parquet.")
    ] = Path("data"),
    page_limit: Annotated[int, typer.Option(min=1, help="Candles per request.")] = 1000,
    api_url: Annotated[
        str | None, typer.Option(help="Send the exchange's API requests to this origin instead.")
    ] = None,
) -> None:
    """Download OHLCV candles; a second run fetches only the candles after the stored ones."""
    import aiohttp
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

    from agent.backtest.download import data_file, download_ohlcv
    from agent.feeds.cex import CexClient

    since_ms = _epoch_ms(since, "--since")
    until_ms = _epoch_ms(until, "--until")
    console = Console(stderr=True)

    async def download() -> None:
        import ccxt

        async with aiohttp.ClientSession() as session:
            client = CexClient(session, exchange, symbols, api_urls=api_url, ccxt_rate_limit=True)
            try:
                with Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("candles"),
                    console=console,
                ) as progress:
                    for symbol in symbols:
                        path = data_file(data_dir, exchange, symbol, timeframe)
                        task = progress.add_task(f"{exchange} {symbol} {timeframe}", total=None)

                        def plan(candles: int, task_id: TaskID = task) -> None:
                            progress.update(task_id, total=candles)

                        def advance(
                            candles: int, last_open_ms: int, task_id: TaskID = task
                        ) -> None:
                            progress.advance(task_id, candles)

                        try:
                            result = await download_ohlcv(
                                client.exchange,
                                symbol,
                                timeframe,
                                path,
                                since_ms=since_ms,
                                until_ms=until_ms,
                                page_limit=page_limit,
                                on_page=advance,
                                on_plan=plan,
                            )
                        except ccxt.BaseError as exc:
                            # ccxt's message can quote a whole response: its first line is enough
                            text = str(exc).strip().splitlines()[:1]
                            raise AgentError(
                                f"{exchange} {symbol}: {type(exc).__name__}: "
                                f"{text[0][:200] if text else ''}; the candles fetched before "
                                "are stored, run again to continue"
                            ) from None
                        progress.update(task, total=result.fetched, completed=result.fetched)
                        span = ""
                        if result.first_ts is not None and result.last_ts is not None:
                            first = datetime.fromtimestamp(result.first_ts, UTC)
                            last = datetime.fromtimestamp(result.last_ts, UTC)
                            span = f" ({first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} UTC)"
                        typer.echo(
                            f"{symbol}: {result.fetched} new candles, {result.total} in "
                            f"{result.path}{span}"
                        )
            finally:
                await client.close()

    asyncio.run(download())
