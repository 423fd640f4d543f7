"""What ``trades``, ``rejections`` and ``balance`` show, as plain dataclasses (``to_dict()`` for
JSON): the CLI prints them, the HTTP API can serve them as they are.

Every view reads one run (the latest by default), a chosen one (``run_id``) or all of them
(``all_runs``), as ``status`` and ``report`` do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from agent.errors import ConfigError, JournalNotFound
from agent.store.journal import Journal, RejectionRecord, RunRecord
from agent.types import FILL_FINAL, FILL_FINALITY_LABELS

NATIVE = "0xEeeeeEeeeEeEeeEeEeEeeEEEeeeeEeeeeeeeEEeE"  # the gas coin, as the portfolio names it


async def select_run(
    journal: Journal, run_id: int | None = None, all_runs: bool = False
) -> tuple[RunRecord | None, list[RunRecord]]:
    """The run to show (None: all runs, or no run was ever recorded) and every run.

    ``ConfigError`` (a usage error) for ``--run`` with ``--all`` and for an unknown run."""
    if run_id is not None and all_runs:
        raise ConfigError("--run and --all: pick one")
    runs = await journal.list_runs()
    if run_id is not None:
        try:
            return await journal.get_run(run_id), runs
        except JournalNotFound:
            known = f"runs {runs[0].id}-{runs[-1].id}" if runs else "no run recorded"
            raise ConfigError(f"--run {run_id}: not in the journal ({known})") from None
    if all_runs or not runs:
        return None, runs
    return runs[-1], runs


# -- trades ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TradeRow:
    """One fill: predicted vs realised profit in USD (the realised one priced at its block)
    and in ``token_in`` smallest units (strings in JSON: exact), its transaction."""

    run_id: int | None
    block: int | None
    strategy: str
    kind: str
    intent_id: str
    mode: str
    tx_hash: str | None
    token_in: str
    token_out: str
    amount_in: int
    amount_out: int
    predicted_profit: int
    realised_profit: int
    predicted_profit_usd: float | None
    realised_profit_usd: float | None
    # "pending confirmation", "final" or "reorged out" (void: in no total)
    status: str = FILL_FINALITY_LABELS[FILL_FINAL]

    @property
    def slippage_usd(self) -> float | None:
        """Realised minus predicted USD (negative: the trade did worse than predicted)."""
        if self.predicted_profit_usd is None or self.realised_profit_usd is None:
            return None
        return self.realised_profit_usd - self.predicted_profit_usd

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        for name in ("amount_in", "amount_out", "predicted_profit", "realised_profit"):
            body[name] = str(body[name])
        body["realised_minus_predicted_usd"] = self.slippage_usd
        return body


@dataclass(frozen=True, slots=True)
class TradeList:
    run: RunRecord | None
    trades: list[TradeRow]
    total: int  # trades in scope before ``limit``

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": None if self.run is None else self.run.id,
            "total": self.total,
            "shown": len(self.trades),
            "trades": [t.to_dict() for t in self.trades],
        }


async def list_trades(
    journal: Journal,
    run_id: int | None = None,
    all_runs: bool = False,
    strategy: str | None = None,
    limit: int | None = None,
) -> TradeList:
    """Fills of the selected run(s), oldest first, reorged-out ones included (marked so);
    of ``strategy`` only; the last ``limit``."""
    run, _ = await select_run(journal, run_id, all_runs)
    scope = None if run is None else run.id
    intents = {r.intent.id: r for r in await journal.list_intents(run_id=scope)}
    if scope is not None:
        # a fill of this run may settle an intent of an earlier run (reconciliation)
        missing = [
            f
            for f in await journal.list_fills(run_id=scope, include_void=True)
            if f.intent_id not in intents
        ]
        for fill in missing:
            intents[fill.intent_id] = await journal.get_intent(fill.intent_id)
    runs_of = await journal.fill_runs()
    rows = []
    for fill in await journal.list_fills(run_id=scope, include_void=True):
        record = intents.get(fill.intent_id)
        name = record.intent.strategy if record is not None else "?"
        if strategy is not None and name != strategy:
            continue
        rows.append(
            TradeRow(
                run_id=runs_of.get(fill.intent_id),
                block=fill.block_number,
                strategy=name,
                kind=record.intent.kind if record is not None else "?",
                intent_id=fill.intent_id,
                mode=fill.mode,
                tx_hash=fill.tx_hash,
                token_in=fill.token_in,
                token_out=fill.token_out,
                amount_in=fill.amount_in,
                amount_out=fill.amount_out,
                predicted_profit=fill.predicted_profit,
                realised_profit=fill.profit,
                predicted_profit_usd=fill.predicted_profit_usd,
                realised_profit_usd=fill.profit_usd,
                status=FILL_FINALITY_LABELS.get(fill.finality, fill.finality),
            )
        )
    shown = rows if limit is None else rows[-limit:] if limit > 0 else []
    return TradeList(run, shown, len(rows))


# -- rejections --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RejectionReason:
    reason: str
    count: int
    examples: list[RejectionRecord]  # the most recent first

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "count": self.count,
            "examples": [
                {**asdict(e), "created_at": e.created_at.isoformat()} for e in self.examples
            ],
        }


@dataclass(frozen=True, slots=True)
class RejectionSummary:
    """Refusals by reason, most frequent first; ``since_block`` is the first block counted
    (None: every block)."""

    run: RunRecord | None
    since_block: int | None
    reasons: list[RejectionReason]

    @property
    def total(self) -> int:
        return sum(r.count for r in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": None if self.run is None else self.run.id,
            "since_block": self.since_block,
            "total": self.total,
            "reasons": [r.to_dict() for r in self.reasons],
        }


async def summarise_rejections(
    journal: Journal,
    run_id: int | None = None,
    all_runs: bool = False,
    since_blocks: int | None = None,
    examples: int = 3,
) -> RejectionSummary:
    """Refusal counts by reason with the ``examples`` most recent of each; with
    ``since_blocks`` only those of the last N blocks up to the run's last block (the latest
    run's when all runs are shown)."""
    run, runs = await select_run(journal, run_id, all_runs)
    scope = None if run is None else run.id
    since: int | None = None
    if since_blocks is not None:
        reference = run if run is not None else (runs[-1] if runs else None)
        if reference is None or reference.last_block is None:
            raise ConfigError("--since-blocks: no run has processed a block yet")
        since = reference.last_block - since_blocks + 1
    counts = await journal.rejection_counts(run_id=scope, since_block=since)
    reasons = [
        RejectionReason(
            reason,
            count,
            await journal.list_rejections(
                run_id=scope, since_block=since, reason=reason, limit=examples
            ),
        )
        for reason, count in counts.items()
    ]
    return RejectionSummary(run, since, reasons)


# -- balances ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BalanceRow:
    """One token held by one account: ``amount`` in smallest units; ``usd`` at the prices of
    the journal's latest equity snapshot (None when it priced no such token)."""

    holder: str  # "paper", "wallet" or "executor"
    address: str | None  # the account (None for the paper portfolio)
    token: str
    symbol: str
    decimals: int | None
    amount: int
    usd: float | None

    @property
    def whole_tokens(self) -> float | None:
        return None if self.decimals is None else self.amount / 10**self.decimals

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["amount"] = str(self.amount)
        return body


@dataclass(frozen=True, slots=True)
class BalanceSheet:
    source: str  # "journal (paper portfolio)" or "chain <id> at block N"
    rows: list[BalanceRow]
    priced_at_block: int | None  # the equity snapshot whose prices value the rows

    @property
    def total_usd(self) -> float:
        return sum(r.usd or 0.0 for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "priced_at_block": self.priced_at_block,
            "total_usd": self.total_usd,
            "balances": [r.to_dict() for r in self.rows],
        }


def known_tokens(cfg: Any) -> tuple[dict[str, str], dict[str, int]]:
    """Symbols and decimals by address that the config knows without the chain: the chain's
    registry (the devnet's deployment file) and ``market.token_addresses``."""
    symbols: dict[str, str] = {}
    decimals: dict[str, int] = {}
    try:
        registry = cfg.chain_addresses().tokens
    except (ConfigError, OSError, ValueError):
        registry = {}
    for token in registry.values():
        symbols[token.address] = token.symbol
        decimals[token.address] = token.decimals
    for symbol, address in cfg.market.token_addresses.items():
        symbols.setdefault(str(address), symbol)
    return symbols, decimals


async def latest_unit_prices(journal: Journal) -> tuple[dict[str, float], int | None]:
    """USD per smallest unit from the latest equity snapshot that recorded prices."""
    for point in reversed(await journal.equity_history()):
        if point.unit_prices_usd:
            return dict(point.unit_prices_usd), point.block_number
    return {}, None


def balance_rows(
    holder: str,
    address: str | None,
    amounts: Mapping[str, int],
    symbols: Mapping[str, str],
    decimals: Mapping[str, int],
    unit_prices: Mapping[str, float],
) -> list[BalanceRow]:
    rows = []
    for token, amount in amounts.items():
        price = unit_prices.get(token)
        rows.append(
            BalanceRow(
                holder=holder,
                address=address,
                token=token,
                symbol=symbols.get(token, "ETH" if token == NATIVE else token),
                decimals=decimals.get(token, 18 if token == NATIVE else None),
                amount=amount,
                usd=None if price is None else amount * price,
            )
        )
    return rows


async def paper_balance_sheet(
    journal: Journal, symbols: Mapping[str, str], decimals: Mapping[str, int]
) -> BalanceSheet:
    """The paper portfolio as the journal holds it."""
    prices, block = await latest_unit_prices(journal)
    amounts = await journal.paper_balances()
    rows = balance_rows("paper", None, amounts, symbols, decimals, prices)
    return BalanceSheet("journal (paper portfolio)", rows, block)


def sort_rows(rows: Sequence[BalanceRow]) -> list[BalanceRow]:
    """By account, then by USD value (largest first), unpriced last."""
    order = {"wallet": 0, "executor": 1, "paper": 2}
    return sorted(rows, key=lambda r: (order.get(r.holder, 3), -(r.usd or -1.0), r.symbol))


async def chain_balance_sheet(
    w3: Any,
    multicall: Any,
    holders: Mapping[str, str],
    tokens: Mapping[str, Any],
    unit_prices: Mapping[str, float],
    priced_at_block: int | None,
) -> BalanceSheet:
    """ERC20 balances (one multicall) and the gas coin of each account in ``holders`` (role ->
    address) read at the latest block; ``tokens`` maps address -> ``Token``."""
    from eth_abi import decode, encode
    from eth_utils import function_signature_to_4byte_selector

    from agent.chain.multicall import Call

    selector = function_signature_to_4byte_selector("balanceOf(address)")
    block = int(await w3.eth.block_number)
    pairs = [(role, token) for role in holders for token in tokens]
    calls = [Call(token, selector + encode(["address"], [holders[role]])) for role, token in pairs]
    result = await multicall.aggregate(calls, block)
    amounts: dict[str, dict[str, int]] = {role: {} for role in holders}
    for (role, token), answer in zip(pairs, result.results, strict=True):
        if answer.success and len(answer.return_data) >= 32:
            (amount,) = decode(["uint256"], answer.return_data[:32])
            amounts[role][token] = int(amount)
    for role, address in holders.items():
        amounts[role][NATIVE] = int(await w3.eth.get_balance(address, block))
    symbols = {address: token.symbol for address, token in tokens.items()}
    decimals = {address: token.decimals for address, token in tokens.items()}
    rows = []
    for role, address in holders.items():
        rows += balance_rows(role, address, amounts[role], symbols, decimals, unit_prices)
    chain_id = int(await w3.eth.chain_id)
    return BalanceSheet(f"chain {chain_id} at block {block}", sort_rows(rows), priced_at_block)
