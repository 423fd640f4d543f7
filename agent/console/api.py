"""The console's JSON API, one router per area, behind the bearer token (the event stream also
takes a short-lived ticket: EventSource cannot send headers).

Units: USD figures are floats (reporting); token amounts are integer smallest units sent as
decimal strings (they pass 2**53); times are unix seconds. Add an area (risk analytics,
webhooks ...) as another router in ``agent.console.app.ROUTERS``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from agent.console.context import (
    ConsoleContext,
    HolderBalances,
    console_context,
    require_token,
)
from agent.console.live import event_json
from agent.dex.v2 import V2Pool
from agent.store.models import IntentStatus

Context = Annotated[ConsoleContext, Depends(console_context)]
KEEPALIVE_S = 15.0

monitor = APIRouter(prefix="/api", tags=["monitor"], dependencies=[Depends(require_token)])
controls = APIRouter(
    prefix="/api/control", tags=["controls"], dependencies=[Depends(require_token)]
)
stream = APIRouter(prefix="/api", tags=["stream"])


def _state(context: ConsoleContext) -> str:
    risk = context.parts.risk
    return "halted" if risk.halt is not None else "paused" if risk.paused else "trading"


def _symbol(context: ConsoleContext, address: str) -> str:
    token = context.parts.tokens.get(address)
    return token.symbol if token is not None else address


def _units(context: ConsoleContext, address: str, amount: int) -> float | None:
    token = context.parts.tokens.get(address)
    return None if token is None else amount / 10**token.decimals


# -- monitor ----------------------------------------------------------------------------------
@monitor.get("/status", summary="Mode, chain, block, trading state and /health in one")
async def status(context: Context) -> dict[str, Any]:
    parts = context.parts
    snapshot = parts.engine.last_snapshot
    report = parts.engine.report
    health = parts.health.report(
        halted=parts.risk.halt is not None,
        paused=parts.risk.paused,
        stale_pools=len(parts.registry.stale_pools),
    )
    return {
        "mode": parts.mode,
        "chain_id": parts.cfg.chain.chain_id,
        "chain": parts.cfg.chain.name,
        "wallet": parts.account,
        "executor": parts.arb_executor,
        "state": _state(context),
        "pause_reason": parts.risk.pause_reason,
        "block": None if snapshot is None else snapshot.block,
        # how far behind the chain the engine acts, and the heads it had no time for
        "head_lag_blocks": health.head_lag_blocks,
        "head_lag_s": None if health.head_lag_s is None else round(health.head_lag_s, 3),
        "heads_skipped": health.heads_skipped,
        "started_at": context.live.started_at,
        "run_id": parts.run_id,
        "strategies": [s.name for s in parts.engine.strategies],
        "ticks": len(report.ticks),
        "fills": len(report.fills),
        "failures": len(report.failures),
        "trades_in_flight": parts.engine.trades_in_flight,
        "health": health.to_json(),
    }


@monitor.get("/runs", summary="Runs, newest first: equity and predicted vs realised PnL")
async def runs(
    context: Context, limit: Annotated[int, Query(ge=1, le=100)] = 10
) -> list[dict[str, Any]]:
    """The journal's runs (this one is ``current``), each with its cumulative predicted and
    realised PnL per fill block and its equity per block (USD)."""
    parts = context.parts
    journal = parts.journal
    now = datetime.now(UTC)
    rows = []
    for run in (await journal.list_runs())[::-1][:limit]:
        current = run.id == parts.run_id
        fills = await journal.list_fills(run_id=run.id)
        if current:  # the engine's fills are priced at their block even before journaling
            fills = parts.engine.report.fills or fills
        predicted = realised = 0.0
        pnl: list[dict[str, Any]] = []
        for fill in fills:
            predicted += fill.predicted_profit_usd or 0.0
            realised += fill.profit_usd or 0.0
            pnl.append(
                {
                    "block": fill.block_number,
                    "predicted_usd": round(predicted, 6),
                    "realised_usd": round(realised, 6),
                }
            )
        if current:
            equity = [{"block": b, "equity_usd": e} for b, e in parts.engine.report.equity_usd]
        else:
            equity = [
                {"block": snap.block_number, "equity_usd": snap.equity_usd}
                for snap in await journal.equity_history(run_id=run.id)
                if snap.block_number is not None
            ]
        rows.append(
            {
                "id": run.id,
                "current": current,
                "mode": run.mode,
                "chain": run.chain_name,
                "chain_id": run.chain_id,
                "started_at": _ts(run.started_at),
                "stopped_at": None if run.stopped_at is None else _ts(run.stopped_at),
                "stop_reason": run.stop_reason,
                "running": run.is_running(now),
                "last_block": run.last_block,
                "fills": len(fills),
                "predicted_profit_usd": round(predicted, 6),
                "realised_profit_usd": round(realised, 6),
                "equity": equity,
                "pnl": pnl,
            }
        )
    return rows


@monitor.get("/trades", summary="Trades (journaled intents) with predicted vs realised")
async def trades(
    context: Context,
    strategy: Annotated[str | None, Query(description="only this strategy")] = None,
    status: Annotated[IntentStatus | None, Query(description="only this status")] = None,
    since: Annotated[float | None, Query(description="created at or after (unix s)")] = None,
    run: Annotated[int | None, Query(description="only this run's (GET /api/runs)")] = None,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 200,
) -> list[dict[str, Any]]:
    """Newest first. Amounts are smallest units (strings); ``realised_profit_usd`` is null
    until the trade filled."""
    journal = context.parts.journal
    records = await journal.list_intents(None if status is None else [status], run_id=run)
    if strategy is not None:
        records = [r for r in records if r.intent.strategy == strategy]
    if since is not None:
        records = [r for r in records if _ts(r.created_at) >= since]
    records = records[-limit:][::-1]
    fills = {f.intent_id: f for f in await journal.list_fills(include_void=True)}
    # The engine's fills carry USD prices of their block even where the journal has none.
    fills.update({f.intent_id: f for f in context.parts.engine.report.fills})
    txs: dict[str, list[str]] = {}
    for tx in await journal.list_txs():
        if tx.intent_id is not None:
            txs.setdefault(tx.intent_id, []).append(tx.tx_hash)
    rows = []
    for record in records:
        intent = record.intent
        fill = fills.get(intent.id)
        rows.append(
            {
                "id": intent.id,
                "strategy": intent.strategy,
                "kind": intent.kind,
                "status": str(record.status),
                "detail": record.status_detail,
                "created_at": _ts(record.created_at),
                "route": " > ".join(f"{hop.dex}" for hop in intent.route),
                "token_in": _symbol(context, intent.token_in),
                "token_out": _symbol(context, intent.token_out),
                "amount_in": str(intent.amount_in),
                "amount_in_units": _units(context, intent.token_in, intent.amount_in),
                "predicted_profit_usd": intent.predicted_profit_usd,
                "realised_profit_usd": None if fill is None else fill.profit_usd,
                "predicted_profit": str(intent.predicted_profit),
                "realised_profit": None if fill is None else str(fill.profit),
                "block": None if fill is None else fill.block_number,
                "tx_hash": None if fill is None else fill.tx_hash,
                # pending (confirmation) / final / reorged (the fill is void)
                "finality": None if fill is None else fill.finality,
                "tx_hashes": txs.get(intent.id, []),
            }
        )
    return rows


def _ts(moment: datetime) -> float:
    if moment.tzinfo is None:  # the journal stores UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@monitor.get("/opportunities", summary="Opportunities found and refusal reasons over time")
async def opportunities(
    context: Context,
    bucket_s: Annotated[float, Query(gt=0, le=86_400)] = 60.0,
    since: Annotated[float | None, Query(description="unix seconds")] = None,
) -> dict[str, Any]:
    """Counts per ``bucket_s`` bucket since this process started: the "why no trade" view;
    ``run_totals`` are the journal's refusal counts of this run."""
    view = context.live.refusals_over_time(bucket_s, since)
    run_id = context.parts.run_id
    view["run_totals"] = (
        {} if run_id is None else await context.parts.journal.rejection_counts(run_id=run_id)
    )
    return view


@monitor.get("/refusals", summary="The latest refusals, newest first")
async def refusals(
    context: Context, limit: Annotated[int, Query(ge=1, le=1_000)] = 100
) -> list[dict[str, Any]]:
    return [event_json(r) for r in list(context.live.refusals)[-limit:][::-1]]


@monitor.get("/balances", summary="Balances of the wallet and the executor, with USD values")
async def balances(context: Context) -> dict[str, Any]:
    parts = context.parts
    view = parts.portfolio.view()
    snapshot = parts.engine.last_snapshot
    prices = {} if snapshot is None else dict(snapshot.prices_usd)
    rows = []
    for address, amount in sorted(view.balances.items()):
        units = _units(context, address, amount)
        price = prices.get(address)
        rows.append(
            {
                "token": address,
                "symbol": _symbol(context, address),
                "amount": str(amount),
                "amount_units": units,
                "price_usd": price,
                "value_usd": None if units is None or price is None else units * price,
            }
        )
    return {
        "holders": {"wallet": parts.account, "executor": parts.arb_executor},
        "equity_usd": view.equity_usd,
        "balances": rows,
        "by_holder": await _by_holder(context, prices),
    }


async def _by_holder(context: ConsoleContext, prices: dict[str, float]) -> list[dict[str, Any]]:
    """The wallet's and the executor's balances at the chain's head (chain modes)."""
    parts = context.parts
    reader = parts.engine.balances
    if not isinstance(reader, HolderBalances):
        return []  # paper mode: the journal's virtual portfolio is the only holder
    names = {parts.account: "wallet", parts.arb_executor: "executor"}
    block = await parts.w3.eth.block_number
    held = await reader.by_holder(block)
    return [
        {
            "holder": holder,
            "role": names.get(holder, "holder"),
            "block": block,
            "value_usd": sum(
                (_units(context, t, a) or 0.0) * prices.get(t, 0.0) for t, a in amounts.items()
            ),
            "balances": {_symbol(context, t): str(a) for t, a in sorted(amounts.items()) if a},
        }
        for holder, amounts in held.items()
    ]


def _pool_price(context: ConsoleContext, pool: Any) -> float | None:
    """Token1 per whole token0 from the pool's state (display only)."""
    t0, t1 = context.parts.tokens.get(pool.token0), context.parts.tokens.get(pool.token1)
    if t0 is None or t1 is None:
        return None
    scale = 10 ** (t0.decimals - t1.decimals)
    if isinstance(pool, V2Pool):
        return None if pool.reserve0 == 0 else pool.reserve1 / pool.reserve0 * scale
    return float((pool.sqrt_price_x96 / 2**96) ** 2 * scale)


@monitor.get("/pools", summary="Pools and USD prices from the last market snapshot")
async def pools(context: Context) -> dict[str, Any]:
    snapshot = context.parts.engine.last_snapshot
    if snapshot is None:
        return {"block": None, "prices_usd": {}, "pools": []}
    rows = []
    for address, pool in sorted(snapshot.pools.items()):
        ref = snapshot.pool_refs.get(address)
        rows.append(
            {
                "address": address,
                "dex": None if ref is None else ref.dex,
                "kind": None if ref is None else ref.kind,
                "pair": f"{_symbol(context, pool.token0)}/{_symbol(context, pool.token1)}",
                "fee_pips": pool.fee_pips,
                "price": _pool_price(context, pool),
                "stale": address in snapshot.stale_pools,
            }
        )
    return {
        "block": snapshot.block,
        "prices_usd": {_symbol(context, t): p for t, p in sorted(snapshot.prices_usd.items())},
        "pools": rows,
    }


@monitor.get("/prices", summary="A token's USD price per block, its fills and grid levels")
async def prices(
    context: Context,
    token: Annotated[str, Query(description="token symbol, e.g. WETH")] = "WETH",
    limit: Annotated[int, Query(ge=2, le=10_000)] = 1_000,
) -> dict[str, Any]:
    """``points``: the token's USD valuation price at each block this process processed;
    ``fills``: this run's fills that bought or sold it (block, side, strategy); ``grids``: the
    levels of each grid strategy on it (quote per base: USD for a USD stablecoin quote)."""
    parts = context.parts
    symbol = token.upper()
    points = [
        {"block": block, "price_usd": by_symbol[symbol]}
        for block, by_symbol in list(context.live.prices)[-limit:]
        if symbol in by_symbol
    ]
    strategy_of = {
        r.intent.id: r.intent.strategy
        for r in await parts.journal.list_intents(run_id=parts.run_id)
    }
    fills = []
    for fill in parts.engine.report.fills:
        bought, sold = _symbol(context, fill.token_out), _symbol(context, fill.token_in)
        if symbol in (bought, sold) and fill.block_number is not None:
            side = "arb" if bought == sold else "buy" if bought == symbol else "sell"
            fills.append(
                {
                    "block": fill.block_number,
                    "side": side,
                    "strategy": strategy_of.get(fill.intent_id),
                    "tx_hash": fill.tx_hash,
                }
            )
    grids = []
    for strategy in parts.engine.strategies:
        book = strategy.state().get("book")  # a grid's book: its levels, live
        pair = str(getattr(getattr(strategy, "params", None), "pair", ""))
        base = pair.split("/")[0]
        base = _symbol(context, base) if base.startswith("0x") else base.upper()
        if isinstance(book, dict) and "levels" in book and base == symbol:
            grids.append(
                {
                    "strategy": strategy.name,
                    "pair": pair,
                    "levels": [float(level) for level in book["levels"]],
                    "stopped": bool(book.get("stopped", False)),
                }
            )
    tokens = sorted({s for _, by_symbol in context.live.prices for s in by_symbol})
    return {"token": symbol, "tokens": tokens, "points": points, "fills": fills, "grids": grids}


@monitor.get("/feeds", summary="Feed health: ages of the latest readings, stale sources")
async def feeds(context: Context) -> dict[str, Any]:
    health = context.parts.health
    return {
        "checked_at": context.live.feeds_checked_at,
        "ages_s": {k: round(v, 3) for k, v in sorted(context.live.feed_ages_s.items())},
        "stale": dict(sorted(health.stale.items())),  # source -> required
        "last_head": health.last_head,
        "head_stalled": health.head_stalled,
    }


@monitor.get("/strategies", summary="Each strategy's saved state and its fills in this run")
async def strategies(context: Context) -> list[dict[str, Any]]:
    parts = context.parts
    fills_by: dict[str, int] = {}
    intents = await parts.journal.list_intents(run_id=parts.run_id)
    records = {r.intent.id: r.intent.strategy for r in intents}
    for fill in parts.engine.report.fills:
        name = records.get(fill.intent_id)
        if name is not None:
            fills_by[name] = fills_by.get(name, 0) + 1
    return [
        {
            "name": s.name,
            "fills": fills_by.get(s.name, 0),
            "state": await parts.journal.get_strategy_state(s.name),
        }
        for s in parts.engine.strategies
    ]


@monitor.get("/risk", summary="Drawdown, daily loss, exposure against their limits")
async def risk(context: Context) -> dict[str, Any]:
    parts = context.parts
    view = parts.portfolio.view()
    limits = parts.risk.limits
    halt = parts.risk.halt
    exposure = parts.portfolio.exposure_usd()
    return {
        "state": _state(context),
        "paused": parts.risk.paused,
        "pause_reason": parts.risk.pause_reason,
        "halted": halt is not None,
        "halt_reason": None if halt is None else halt.reason,
        "equity_usd": view.equity_usd,
        "drawdown_pct": view.drawdown_pct,
        "max_drawdown_pct": limits.max_drawdown_pct,
        "daily_pnl_usd": view.realized_pnl_today_usd,
        "daily_loss_limit_usd": limits.daily_loss_limit_usd,
        "exposure_usd": {_symbol(context, t): v for t, v in sorted(exposure.items())},
        "total_exposure_usd": sum(exposure.values()),
        "max_token_exposure_usd": limits.max_token_exposure_usd,
        "max_total_exposure_usd": limits.max_total_exposure_usd,
    }


@monitor.get("/alerts", summary="Recent alert-worthy events, newest first")
async def alerts(
    context: Context, limit: Annotated[int, Query(ge=1, le=200)] = 100
) -> list[dict[str, Any]]:
    return [event_json(e) for e in list(context.live.timeline)[-limit:][::-1]]


# -- controls ---------------------------------------------------------------------------------
class PauseRequest(BaseModel):
    reason: str = Field("paused from the console", max_length=200)


class KillRequest(BaseModel):
    confirm: str = Field(description='must be "kill": the agent halts and shuts down')


@controls.post("/pause", summary="Stop opening trades until resume (in-flight ones finish)")
async def pause(
    context: Context, http: Request, request: Annotated[PauseRequest | None, Body()] = None
) -> dict[str, Any]:
    reason = (request or PauseRequest()).reason.strip() or "paused from the console"
    await context.control.pause(reason)
    await context.journal_control_action(http, "pause", accepted=True, argument=reason)
    return {"state": _state(context), "reason": reason}


@controls.post("/resume", summary="Lift a pause or a risk halt")
async def resume(context: Context, http: Request) -> dict[str, Any]:
    await context.control.resume()
    await context.journal_control_action(http, "resume", accepted=True)
    return {"state": _state(context)}


@controls.post("/kill", summary='Halt trading and stop the agent (needs {"confirm": "kill"})')
async def kill(context: Context, http: Request, request: KillRequest) -> dict[str, Any]:
    if request.confirm != "kill":
        await context.journal_control_action(
            http, "kill", accepted=False, detail='not confirmed (confirm must be "kill")'
        )
        raise HTTPException(status_code=400, detail='confirm must be "kill"')
    await context.control.kill()
    await context.journal_control_action(http, "kill", accepted=True)
    return {"state": _state(context)}


# -- the live stream --------------------------------------------------------------------------
@stream.post(
    "/events/ticket",
    dependencies=[Depends(require_token)],
    summary="A short-lived ticket for GET /api/events (EventSource cannot send headers)",
)
async def events_ticket(context: Context) -> dict[str, Any]:
    ticket, expires = context.auth.issue_ticket()
    return {"ticket": ticket, "expires_at": expires}


@stream.get(
    "/events",
    summary="Server-sent events: every event the agent publishes, as JSON",
    response_class=StreamingResponse,
)
async def events(
    request: Request,
    context: Context,
    ticket: Annotated[str | None, Query(description="from POST /api/events/ticket")] = None,
) -> StreamingResponse:
    """Authenticated by the bearer header or a ticket. Each message is ``event: <kind>`` with
    the event as JSON; a comment line every 15 s keeps proxies from closing the stream."""
    if not (
        context.auth.bearer_ok(request.headers.get("authorization"))
        or context.auth.ticket_ok(ticket)
    ):
        raise HTTPException(status_code=401, detail="missing or expired ticket or token")
    queue = context.live.open_stream()

    async def messages() -> AsyncIterator[str]:
        try:
            yield f"event: hello\ndata: {json.dumps({'state': _state(context)})}\n\n"
            while True:
                try:
                    body = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                yield f"event: {body['kind']}\ndata: {json.dumps(body)}\n\n"
        finally:
            context.live.close_stream(queue)

    return StreamingResponse(
        messages(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
