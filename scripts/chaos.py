"""Crash drill of the real agent: `defi-agent run --mode fork`, SIGKILLed at random moments.

This script starts a devnet (Anvil with the real Uniswap stack, a block every second), funds a
wallet there and deploys its ArbExecutor (as `demo` and `dry-run` do), and drives the simulated
market (``agent.devnet.market.MarketSimulator``: noise traders, arbitrage gaps, a whale) from
this process for the whole drill, whether the agent is up or not. It writes an agent.toml (fork
mode on that devnet; arbitrage through the ArbExecutor, grid and DCA enabled; the wallet in an
encrypted keystore) and runs the real CLI, `defi-agent run --config ... --mode fork`, as a
child process. Each round the child is SIGKILLed (during start-up, right after it journals a
signed transaction or marks one sent, the journal being watched for it, or a random time after
its first tick; see ``MOMENTS``), then restarted on the same journal once the kernel has reaped
it. A last clean start reconciles and trades, then gets SIGTERM.

Then the chain is checked against the journal, from every block mined since the funding:

* ``lost``: a transaction of the wallet (or one moving the ArbExecutor's or the wallet's tokens)
  that no journaled intent accounts for; a trade mined on chain whose intent is not filled by it;
* ``duplicated``: an intent with more than one successful trade on chain, or an opportunity
  filled by more than one intent;
* ``grid_level_bought_twice``: a grid lot bought again before it was sold (the journal's grid
  fills, in chain order, per level of the grid);
* ``non_final``: journal rows (transactions and intents) not final after the last stop;
* ``balance_mismatch``: (holder, token) pairs whose balance differs from the starting balance
  plus the journaled fills (exact integers), and the wallet's ETH from the start less the gas of
  every journaled transaction (wei);
* ``journal_contradicts_chain``: journaled transaction statuses the chain disagrees with;
* ``grid_book_disagrees_with_fills``: lots the grid's saved book holds (level, amount) that the
  journal's grid fills do not, or the other way round (a fill that never reached the grid).

It prints one JSON object (those counts, ``kills``, ``trades`` and a description of the run)
and exits 0 when every failure count is 0 and the agent never exited on its own.

Usage::

    python scripts/chaos.py                       # 20 kills, at least 40 trades
    python scripts/chaos.py --kills 3 --min-trades 0 --max-kill-delay 15  # the CI drill
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eth_abi import encode  # noqa: E402
from eth_utils import function_signature_to_4byte_selector, keccak  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from agent.app.rehearsal import fund_and_deploy  # noqa: E402
from agent.config.loading import toml_dumps  # noqa: E402
from agent.devnet import Devnet  # noqa: E402
from agent.devnet.deploy import Deployment  # noqa: E402
from agent.devnet.jsonrpc import JsonRpc  # noqa: E402
from agent.devnet.market import MarketSimulator  # noqa: E402
from agent.devnet.node import DEV_ACCOUNTS  # noqa: E402
from agent.execution import TRADE_PURPOSES  # noqa: E402
from agent.store import Journal, TxStatus, init_db, session_factory  # noqa: E402
from agent.store.models import FINAL_INTENT_STATUSES, IntentStatus  # noqa: E402
from agent.wallet.keystore import create_keystore  # noqa: E402
from strategies.grid import HOLD_WAIT, HOLDING, PENDING_SELL  # noqa: E402

WALLET_INDEX = 9  # a funded dev account that neither the simulated market nor the tests use
PASSWORD_ENV = "CHAOS_KEYSTORE_PASSWORD"
TOKENS = ["WETH", "USDC", "WBTC", "DAI"]
# Wide: the grid stops for good if the price leaves the range (levels never move, so a level
# index names one price for the whole drill).
GRID = {"lower_price": 2_500, "upper_price": 3_500, "levels": 201, "order_size": "0.5"}
GRID_POOL_FEE = 10_000
_BALANCE_OF = function_signature_to_4byte_selector("balanceOf(address)")
_APPROVE = function_signature_to_4byte_selector("approve(address,uint256)")
_EXACT_INPUT = function_signature_to_4byte_selector(
    "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))"
)
_TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
_IN_FLIGHT = ("signed", "sent")
GRID_HELD = (HOLDING, PENDING_SELL, HOLD_WAIT)  # a grid lot's statuses while it is held
# When a round's SIGKILL lands, and how often each is chosen: a random time after the start
# (unlocking the keystore, discovering pools, start-up reconciliation); right after the
# process journals a signed transaction, or marks one sent (broadcast); a random time after
# its first tick (trading, trades in flight or not).
MOMENTS = {"during_start_up": 2, "after_signing": 2, "after_broadcast": 3, "while_trading": 3}


# ---------------------------------------------------------------------------------------------
# The devnet, the wallet and the agent's configuration


@dataclass
class Setup:
    rpc: JsonRpc
    deployment: Deployment
    deployment_file: Path
    wallet: str
    executor: str
    config: Path
    journal_file: Path
    environ: dict[str, str]
    start_block: int


def grid_pool(deployment: Deployment) -> str:
    """The pool the grid trades and the swinger moves: uniswap_v3 WETH/USDC at 1% (the
    shallowest V3 pool of the pair, and one an arbitrage only closes when the gap pays 2%)."""
    tokens = {deployment.tokens["WETH"].address.lower(), deployment.tokens["USDC"].address.lower()}
    for pool in deployment.pools:
        if (
            pool.dex == "uniswap_v3"
            and pool.fee_pips == GRID_POOL_FEE
            and {pool.token0.lower(), pool.token1.lower()} == tokens
        ):
            return pool.address
    raise SystemExit("the devnet has no uniswap_v3 WETH/USDC 1% pool")


def agent_tree(
    rpc_url: str,
    deployment_file: Path,
    workdir: Path,
    executor: str,
    keystore: Path,
    grid_pool: str,
) -> dict[str, Any]:
    """The agent.toml of the drill: fork mode on the devnet, every trading path enabled."""
    return {
        "chain": {
            "name": "devnet",
            "chain_id": 31337,
            "rpc_urls": [rpc_url],
            "deployment_file": str(deployment_file),
            "poll_interval_s": 0.2,
        },
        "wallet": {"keystore": str(keystore), "password_env": PASSWORD_ENV},
        "execution": {
            "mode": "fork",
            "arb_executor": executor,
            "slippage_bps": 30,
            "receipt_timeout_s": 30,
            "replace_after_s": 15,
        },
        "risk": {
            "max_gas_price_gwei": 500,
            "max_trade_usd": 500_000.0,
            # the funded wallet holds millions in every token: exposure is not what is drilled
            "max_token_exposure_usd": 1e9,
            "max_total_exposure_usd": 1e9,
            "daily_loss_limit_usd": 1e6,
            "max_drawdown_pct": 90.0,
            # the simulated gaps are wide, and grow while the agent is down
            "max_price_impact_bps": 3_000,
            "cooldown_s": 0.0,
            "revert_cooldown_s": 2.0,
            "token_allowlist": TOKENS,
            "kill_switch_file": str(workdir / "KILL"),
        },
        "market": {"tokens": TOKENS},
        # two trades per pair at once: grid and DCA trade beside an arbitrage on WETH/USDC
        "engine": {"block_source": "poll", "max_in_flight_per_pair": 2},
        "strategies": {
            # the best cycle only: the second trade slot of the pair is the grid's or the DCA's
            "arbitrage": {
                "enabled": True,
                "min_profit_usd": 1.0,
                "max_input_usd": 200_000.0,
                "max_opportunities": 1,
            },
            "grid": {
                "enabled": True,
                "pair": "WETH/USDC",
                # the pool the swinger moves a few levels down and up, again and again
                "pool": grid_pool,
                "spacing": "arithmetic",
                "on_range_exit": "stop",  # levels never move: a level index is one price
                "max_slippage_bps": 300,
                **GRID,
            },
            "dca": {
                "enabled": True,
                # a pair the WETH/USDC gaps leave alone: its buys are not undercut by the
                # arbitrage trading the same pool in the same block
                "buy_token": "WBTC",
                "spend_token": "USDC",
                "amount": 250,
                "interval_s": 6.0,
                "route": "pools",
            },
        },
        "feeds": {"simulated": True},
        "alerts": {"console": {"enabled": False}},
        "metrics": {"enabled": False},
        "store": {"url": f"sqlite+aiosqlite:///{workdir / 'journal.db'}"},
    }


async def prepare(devnet: Devnet, workdir: Path) -> Setup:
    """Fund the wallet, deploy its ArbExecutor, write its keystore and agent.toml; then the
    devnet mines a block every second."""
    assert devnet.rpc is not None and devnet.deployment is not None
    assert devnet.deployments_dir is not None
    rpc, deployment = devnet.rpc, devnet.deployment
    wallet, key = DEV_ACCOUNTS[WALLET_INDEX]
    executor = await fund_and_deploy(rpc, deployment, wallet)
    password = "chaos drill " + os.urandom(8).hex()
    keystore = workdir / "keys" / "keystore.json"
    keystore.parent.mkdir(parents=True, exist_ok=True)
    # a light scrypt: the agent unlocks the keystore at every one of its many restarts
    create_keystore(keystore, SecretStr(password), bytes.fromhex(key[2:]), scrypt_n=2**14)
    deployment_file = devnet.deployments_dir / f"{devnet.name}.json"
    config = workdir / "agent.toml"
    config.write_text(
        toml_dumps(
            agent_tree(
                devnet.rpc_url,
                deployment_file,
                workdir,
                executor,
                keystore,
                grid_pool(deployment),
            )
        )
    )
    await rpc.call("evm_setAutomine", [False])
    await rpc.call("evm_setIntervalMining", [1])
    start_block = int(await rpc.call("eth_blockNumber"), 16)
    return Setup(
        rpc=rpc,
        deployment=deployment,
        deployment_file=deployment_file,
        wallet=wallet,
        executor=executor,
        config=config,
        journal_file=workdir / "journal.db",
        environ={PASSWORD_ENV: password},
        start_block=start_block,
    )


# ---------------------------------------------------------------------------------------------
# Balances


async def balances(setup: Setup, block: int) -> dict[str, int]:
    """``holder:symbol`` -> balance at ``block`` (smallest units; ``wallet:ETH`` in wei)."""
    tag = hex(block)
    requests: list[tuple[str, list[Any]]] = [("eth_getBalance", [setup.wallet, tag])]
    keys = ["wallet:ETH"]
    for holder_name, holder in (("wallet", setup.wallet), ("executor", setup.executor)):
        for symbol in TOKENS:
            token = setup.deployment.tokens[symbol].address
            data = "0x" + (_BALANCE_OF + encode(["address"], [holder])).hex()
            requests.append(("eth_call", [{"to": token, "data": data}, tag]))
            keys.append(f"{holder_name}:{symbol}")
    results = await setup.rpc.batch(requests)
    return {key: int(value, 16) for key, value in zip(keys, results, strict=True)}


# ---------------------------------------------------------------------------------------------
# The market, kept moving by this process whatever the agent does


@dataclass
class GridSwinger:
    """Swings the grid's pool: every ``every`` market steps a swap of ``usd`` by a dev account
    no one else uses, selling WETH and buying it back in turn (so the grid's levels are crossed
    down and up). Sent like the simulated market's trades: approve and swap, not awaited."""

    rpc: JsonRpc
    deployment: Deployment
    usd: float = 100_000.0  # about 0.75% of the pool price: four levels or so
    every: int = 2
    trader: str = DEV_ACCOUNTS[2][0]
    swings: int = 0

    async def step(self, market_step: int) -> None:
        if market_step % self.every:
            return
        weth, usdc = self.deployment.tokens["WETH"], self.deployment.tokens["USDC"]
        down = self.swings % 2 == 0
        self.swings += 1
        token_in, token_out = (weth, usdc) if down else (usdc, weth)
        amount_in = int(
            self.usd / self.deployment.prices_usd[token_in.symbol] * 10**token_in.decimals
        )
        router = self.deployment.addresses["uniswap_v3.swap_router"]
        approve = encode(["address", "uint256"], [router, amount_in])
        swap = encode(
            ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"],
            [
                (
                    token_in.address,
                    token_out.address,
                    GRID_POOL_FEE,
                    self.trader,
                    2**40,
                    amount_in,
                    0,
                    0,
                )
            ],
        )
        for to, data in ((token_in.address, _APPROVE + approve), (router, _EXACT_INPUT + swap)):
            await self.rpc.call(
                "eth_sendTransaction",
                [{"from": self.trader, "to": to, "data": "0x" + data.hex(), "gas": hex(800_000)}],
            )


async def drive_market(simulator: MarketSimulator, swinger: GridSwinger, interval_s: float) -> None:
    while True:
        try:
            await simulator.step()
            await swinger.step(simulator.steps)
        except Exception as exc:  # a failed simulated trade never stops the drill
            if isinstance(exc, asyncio.CancelledError):
                raise
            print(f"simulated market step failed: {exc}", file=sys.stderr)
        await asyncio.sleep(interval_s)


# ---------------------------------------------------------------------------------------------
# The agent process


def agent_command(config: Path) -> list[str]:
    """The real CLI: the installed `defi-agent` script beside this interpreter, else -m agent."""
    script = Path(sys.executable).with_name("defi-agent")
    head = [str(script)] if script.is_file() else [sys.executable, "-m", "agent"]
    return [*head, "run", "--config", str(config), "--mode", "fork"]


def journal_txs(journal_file: Path) -> dict[str, str]:
    """tx hash -> status, read from the agent's SQLite journal while it runs (read-only)."""
    if not journal_file.is_file():
        return {}
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{journal_file}?mode=ro", uri=True, timeout=1.0)
        ) as db:
            return dict(db.execute("SELECT tx_hash, status FROM transactions").fetchall())
    except sqlite3.Error:
        return {}  # not created yet, or busy for a moment: look again


@dataclass
class Drill:
    setup: Setup
    rng: random.Random
    workdir: Path
    max_kill_delay_s: float
    kills: int = 0
    kill_moments: Counter[str] = field(default_factory=Counter)
    kills_with_own_tx_in_flight: int = 0  # the killed process had a tx signed or sent
    kills_before_first_tick_done: int = 0  # start-up: unlock, discover, reconcile, tick
    agent_exits: Counter[str] = field(default_factory=Counter)
    starts: int = 0
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> asyncio.subprocess.Process:
        self.starts += 1
        log = (self.workdir / f"agent-{self.starts:03d}.log").open("wb")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *agent_command(self.setup.config),
                env={**os.environ, **self.setup.environ},
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.workdir,
            )
        finally:
            log.close()
        return self.proc

    async def stop_agent(self) -> None:
        """Whatever agent is still running when the drill ends early is killed and reaped."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def kill_round(self) -> None:
        """Start the agent and SIGKILL it at a moment the dice choose (``MOMENTS``)."""
        known = journal_txs(self.setup.journal_file)
        ticked = latest_tick(self.setup.journal_file)
        proc = await self.start()
        moment = self.rng.choices(list(MOMENTS), weights=list(MOMENTS.values()))[0]
        delay_s = self.rng.uniform(0.3, self.max_kill_delay_s)
        started = time.monotonic()
        # a moment that never comes (no trade, no tick) gives way to a kill after this long
        deadline = started + 3 * self.max_kill_delay_s
        if moment == "during_start_up":
            deadline = started + self.rng.uniform(0.3, 8.0)
        first_tick_at: float | None = None
        while proc.returncode is None and time.monotonic() < deadline:
            if moment == "after_signing":  # a transaction journaled (signed) since the start
                if set(journal_txs(self.setup.journal_file)) - set(known):
                    break
            elif moment == "after_broadcast":  # a transaction marked sent since the start
                now = journal_txs(self.setup.journal_file)
                if any(s == "sent" and known.get(h) != s for h, s in now.items()):
                    break
            elif moment == "while_trading":  # a random delay after its first tick
                if first_tick_at is None and latest_tick(self.setup.journal_file) > ticked:
                    first_tick_at = time.monotonic()
                if first_tick_at is not None and time.monotonic() > first_tick_at + delay_s:
                    break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.02)
        else:
            if moment != "during_start_up" and proc.returncode is None:
                moment = "timed_out_waiting"  # the watched moment never came
        if proc.returncode is not None:
            self.agent_exits[str(proc.returncode)] += 1
            self._report_exit(proc.returncode)
            return
        proc.send_signal(signal.SIGKILL)
        # The agent holds the journal's instance lock until the kernel has reaped it.
        await proc.wait()
        self.kills += 1
        self.kill_moments[moment] += 1
        after = journal_txs(self.setup.journal_file)
        self.kills_with_own_tx_in_flight += any(
            status in _IN_FLIGHT for tx_hash, status in after.items() if tx_hash not in known
        )
        self.kills_before_first_tick_done += latest_tick(self.setup.journal_file) == ticked
        # down for a moment: the market (and whatever the agent broadcast) goes on
        await asyncio.sleep(self.rng.uniform(0.0, 2.0))

    async def clean_round(self, blocks: int) -> int | None:
        """The last start: reconcile, trade for ``blocks`` blocks, SIGTERM; its exit code."""
        proc = await self.start()
        first = int(await self.setup.rpc.call("eth_blockNumber"), 16)
        async with asyncio.timeout(120):
            while latest_tick(self.setup.journal_file) < first + blocks:
                if proc.returncode is not None:
                    self.agent_exits[str(proc.returncode)] += 1
                    self._report_exit(proc.returncode)
                    return proc.returncode
                await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            return await proc.wait()

    def _report_exit(self, returncode: int) -> None:
        log = (self.workdir / f"agent-{self.starts:03d}.log").read_text(errors="replace")
        print(f"the agent exited by itself ({returncode}):\n{log[-3000:]}", file=sys.stderr)


def _journal_value(journal_file: Path, query: str) -> int:
    """One integer from the agent's SQLite journal, read while it runs (0 before it exists)."""
    if not journal_file.is_file():
        return 0
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{journal_file}?mode=ro", uri=True, timeout=1.0)
        ) as db:
            (value,) = db.execute(query).fetchone()
            return int(value or 0)
    except sqlite3.Error:
        return 0


def latest_tick(journal_file: Path) -> int:
    """The last block the agent finished a tick on (its equity snapshot), 0 before any."""
    return _journal_value(journal_file, "SELECT MAX(block_number) FROM equity_snapshots")


def filled_intents(journal_file: Path) -> int:
    return _journal_value(journal_file, "SELECT COUNT(*) FROM intents WHERE status = 'filled'")


# ---------------------------------------------------------------------------------------------
# The chain against the journal


def _hash(value: Any) -> str:
    return str(value).lower()


def _topic_address(address: str) -> str:
    return "0x" + "0" * 24 + address.lower()[2:]


async def chain_activity(
    setup: Setup, end_block: int
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], int]:
    """(our transactions by hash, their receipts by hash, blocks read) from start to end:
    sent by the wallet or to the ArbExecutor, or moving the wallet's or the ArbExecutor's
    tokens (whoever sent them)."""
    rpc, ours = setup.rpc, {}
    wallet, executor = setup.wallet.lower(), setup.executor.lower()
    numbers = list(range(setup.start_block + 1, end_block + 1))
    for chunk in range(0, len(numbers), 50):
        blocks = await rpc.batch(
            [("eth_getBlockByNumber", [hex(n), True]) for n in numbers[chunk : chunk + 50]]
        )
        for block in blocks:
            for tx in block["transactions"]:
                if tx["from"].lower() == wallet or (tx.get("to") or "").lower() == executor:
                    ours[_hash(tx["hash"])] = tx
    for holder in (wallet, executor):
        for topics in (
            [_TRANSFER_TOPIC, _topic_address(holder)],
            [_TRANSFER_TOPIC, None, _topic_address(holder)],
        ):
            logs = await rpc.call(
                "eth_getLogs",
                [
                    {
                        "fromBlock": hex(setup.start_block + 1),
                        "toBlock": hex(end_block),
                        "topics": topics,
                    }
                ],
            )
            for entry in logs:
                tx_hash = _hash(entry["transactionHash"])
                if tx_hash not in ours:
                    ours[tx_hash] = await rpc.call("eth_getTransactionByHash", [tx_hash])
    hashes = list(ours)
    receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
    return ours, dict(zip(hashes, receipts, strict=True)), len(numbers)


def grid_lot(opportunity_id: str) -> tuple[str, int] | None:
    """(side, level) of a grid order id ``grid-<seq>-<side>-L<level>``."""
    parts = opportunity_id.split("-")
    if len(parts) < 4 or parts[0] != "grid" or not parts[3].startswith("L"):
        return None
    return parts[2], int(parts[3][1:])


async def verify(setup: Setup, start_balances: dict[str, int], end_block: int) -> dict[str, Any]:
    ours, receipts, blocks_read = await chain_activity(setup, end_block)
    engine = await init_db(f"sqlite+aiosqlite:///{setup.journal_file}")
    try:
        journal = Journal(session_factory(engine))
        txs = {_hash(tx.tx_hash): tx for tx in await journal.list_txs()}
        records = {r.intent.id: r for r in await journal.list_intents()}
        fills = {f.intent_id: f for f in await journal.list_fills()}
        non_final = len(await journal.list_non_final()) + len(
            await journal.list_non_final_intents()
        )
        grid_state = await journal.get_strategy_state("grid") or {}
    finally:
        await engine.dispose()

    lost: list[str] = []
    contradicted: list[str] = []
    successes: dict[str, list[str]] = defaultdict(list)  # intent -> its successful trades
    for tx_hash, receipt in receipts.items():
        row = txs.get(tx_hash)
        if row is None or row.intent_id is None or row.intent_id not in records:
            lost.append(f"{tx_hash}: no journaled intent")
            continue
        if receipt is None:
            continue
        mined_ok = int(receipt["status"], 16) == 1
        expected = TxStatus.MINED if mined_ok else TxStatus.REVERTED
        if row.status != expected:
            contradicted.append(f"{tx_hash}: journal {row.status}, chain {expected}")
        if mined_ok and row.purpose in TRADE_PURPOSES:
            successes[row.intent_id].append(tx_hash)
    for tx_hash, row in txs.items():
        if row.status in (TxStatus.MINED, TxStatus.REVERTED) and tx_hash not in receipts:
            contradicted.append(f"{tx_hash}: journal {row.status}, not on chain")
    for intent_id, hashes in successes.items():
        fill = fills.get(intent_id)
        if fill is None or _hash(fill.tx_hash) not in hashes:
            lost.append(f"intent {intent_id}: traded on chain, not filled by that trade")
    duplicated = sum(len(hashes) - 1 for hashes in successes.values())
    by_opportunity = Counter(
        r.intent.opportunity_id or r.intent.id
        for r in records.values()
        if r.status == IntentStatus.FILLED
    )
    duplicated += sum(n - 1 for n in by_opportunity.values() if n > 1)

    # Grid: in chain order, a level is bought, then sold, then bought ... never bought twice.
    grid_fills = []
    for intent_id, fill in fills.items():
        record = records.get(intent_id)
        if record is None or record.intent.strategy != "grid" or fill.amount_out <= 0:
            continue
        lot = grid_lot(record.intent.opportunity_id or intent_id)
        receipt = receipts.get(_hash(fill.tx_hash))
        position = (fill.block_number or 0, int(receipt["transactionIndex"], 16) if receipt else 0)
        if lot is not None:
            side, level = lot
            grid_fills.append((position, (side, level, fill.amount_out if side == "buy" else 0)))
    held: dict[int, int] = {}  # level -> base bought (smallest units), while held
    bought_twice = 0
    out_of_grid = 0
    for _, (side, level, base) in sorted(grid_fills):
        if not 0 <= level < GRID["levels"] - 1:
            out_of_grid += 1
        if side == "buy":
            bought_twice += level in held
            held[level] = base
        else:
            held.pop(level, None)
    # The grid's own book, as it saved it at the last stop, holds exactly those lots: every
    # fill reached it (reconciled ones included), none twice.
    book = grid_state.get("book", {})
    book_held = {
        level: int(base)
        for level, (status, base) in enumerate(
            zip(book.get("status", []), book.get("lot_base", []), strict=True)
        )
        if int(status) in GRID_HELD
    }
    grid_book_disagrees = len(set(held.items()) ^ set(book_held.items()))

    # Balances: the start, plus every journaled fill, less the gas of every journaled tx.
    expected = dict(start_balances)
    symbol_of = {t.address.lower(): s for s, t in setup.deployment.tokens.items()}
    for intent_id, fill in fills.items():
        record = records[intent_id]
        holder = "executor" if record.intent.kind == "arb" else "wallet"
        token_in = f"{holder}:{symbol_of[fill.token_in.lower()]}"
        token_out = f"{holder}:{symbol_of[fill.token_out.lower()]}"
        expected[token_in] = expected.get(token_in, 0) - fill.amount_in
        expected[token_out] = expected.get(token_out, 0) + fill.amount_out
    for row in txs.values():
        if row.status in (TxStatus.MINED, TxStatus.REVERTED):
            gas = (row.gas_used or 0) * (row.effective_gas_price_wei or 0)
            expected["wallet:ETH"] -= gas
    actual = await balances(setup, end_block)
    mismatches = {
        key: {"expected": expected.get(key, 0), "actual": value}
        for key, value in actual.items()
        if expected.get(key, 0) != value
    }
    statuses = Counter(str(r.status) for r in records.values())
    return {
        "lost": len(lost),
        "duplicated": duplicated,
        "grid_level_bought_twice": bought_twice,
        "grid_book_disagrees_with_fills": grid_book_disagrees,
        "non_final": non_final,
        "balance_mismatch": len(mismatches),
        "journal_contradicts_chain": len(contradicted),
        "trades": statuses.get(str(IntentStatus.FILLED), 0),
        "details": {
            "lost": lost[:20],
            "contradicted": contradicted[:20],
            "balance_mismatches": mismatches,
            "grid_fills_outside_the_levels": out_of_grid,
        },
        "run": {
            "blocks_checked": blocks_read,
            "chain_txs_of_wallet_and_executor": len(ours),
            "journaled_txs": len(txs),
            "journaled_txs_by_purpose": dict(Counter(tx.purpose for tx in txs.values())),
            "intents_by_status": dict(sorted(statuses.items())),
            "trades_by_strategy": dict(
                sorted(
                    Counter(
                        records[i].intent.strategy
                        for i, f in fills.items()
                        if records[i].status == IntentStatus.FILLED
                    ).items()
                )
            ),
            "grid_fills_by_side": dict(Counter(lot[0] for _, lot in grid_fills)),
            "grid_lots_held_at_the_end": len(held),
            "final_intent_statuses_only": all(
                r.status in FINAL_INTENT_STATUSES for r in records.values()
            ),
        },
    }


# ---------------------------------------------------------------------------------------------
# The drill


async def drill(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir)
    rng = random.Random(args.seed)
    started = time.monotonic()
    async with Devnet(name="chaos", deployments_dir=workdir) as devnet:
        setup = await prepare(devnet, workdir)
        start_balances = await balances(setup, setup.start_block)
        simulator = MarketSimulator(setup.rpc, setup.deployment, seed=args.seed)
        swinger = GridSwinger(setup.rpc, setup.deployment)
        market = asyncio.create_task(drive_market(simulator, swinger, 1.0))
        run = Drill(setup, rng, workdir, args.max_kill_delay)
        try:
            give_up = started + args.max_minutes * 60
            while run.kills < args.kills or filled_intents(setup.journal_file) < (args.min_trades):
                if time.monotonic() > give_up or run.starts >= 4 * args.kills + 40:
                    break
                await run.kill_round()
            final_exit = await run.clean_round(args.final_blocks)
        finally:
            await run.stop_agent()
            market.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await market
        # Two more blocks: anything still in the pool (nothing should be) is mined or stays.
        end_block = int(await setup.rpc.call("eth_blockNumber"), 16) + 2
        while int(await setup.rpc.call("eth_blockNumber"), 16) < end_block:
            await asyncio.sleep(0.2)
        checks = await verify(setup, start_balances, end_block)
    failures = ("lost", "duplicated", "grid_level_bought_twice", "non_final", "balance_mismatch")
    return {
        "kills": run.kills,
        "trades": checks["trades"],
        **{name: checks[name] for name in failures},
        "journal_contradicts_chain": checks["journal_contradicts_chain"],
        "grid_book_disagrees_with_fills": checks["grid_book_disagrees_with_fills"],
        "agent_exited_by_itself": sum(run.agent_exits.values()),
        "final_sigterm_exit_code": final_exit,
        "run": {
            "what": (
                "`defi-agent run --mode fork` (the CLI, a child process) on a devnet with a block "
                "a second and the simulated market driven by this process; arbitrage through the "
                "ArbExecutor, grid (WETH/USDC, 200 levels 5 USDC apart, on the uniswap_v3 1% "
                "pool a swinger moves down and up) and DCA (WBTC with USDC) enabled; "
                "SIGKILLed at random moments and restarted on the same journal; a last clean "
                "start reconciled and traded, then stopped with SIGTERM; the journal then "
                "checked against every block mined since the wallet was funded"
            ),
            "seed": args.seed,
            "duration_s": round(time.monotonic() - started, 1),
            "agent_starts": run.starts,
            "kills_by_moment": dict(sorted(run.kill_moments.items())),
            "kills_with_own_tx_signed_or_sent": run.kills_with_own_tx_in_flight,
            "kills_before_its_first_tick_was_done": run.kills_before_first_tick_done,
            "agent_exit_codes_when_not_killed": dict(run.agent_exits),
            "market_steps": simulator.steps,
            "grid_pool_swings": swinger.swings,
            **checks["run"],
        },
        "details": checks["details"],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs to deliver")
    parser.add_argument(
        "--min-trades", type=int, default=40, help="keep killing until this many trades filled"
    )
    parser.add_argument(
        "--max-kill-delay", type=float, default=20.0, help="longest random delay before a kill (s)"
    )
    parser.add_argument(
        "--final-blocks", type=int, default=8, help="blocks the last clean start trades"
    )
    parser.add_argument("--max-minutes", type=float, default=30.0, help="stop killing after this")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--workdir", help="journal, config, keystore and agent logs (default: tmp)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="chaos-")
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    result = asyncio.run(drill(args))
    print(json.dumps(result, sort_keys=True))
    failed = any(
        result[name]
        for name in (
            "lost",
            "duplicated",
            "grid_level_bought_twice",
            "non_final",
            "balance_mismatch",
            "journal_contradicts_chain",
            "grid_book_disagrees_with_fills",
            "agent_exited_by_itself",
        )
    )
    return 1 if failed or result["final_sigterm_exit_code"] != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
