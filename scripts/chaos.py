"""Crash-safety drill: kill the executing process with SIGKILL at random points of the pipeline.

A child process executes swap intents on a devnet (exact approval + router swap each, all
journaled). It is SIGKILLed over and over, either by itself at a chosen pipeline step (the n-th
time that step happens: intent recorded, tx signed, journaled, broadcast, marked sent, receipt,
marked final, approved, settled) or by this parent after a random delay. After every kill the
parent restarts the pipeline's recovery (start-up reconciliation), then compares the journal with
the chain. At the end it prints JSON counts:

* ``trades_attempted``  intents that made it into the journal (each trade is attempted once)
* ``lost``              on-chain transactions of the wallet that the journal does not know, and
                        trades mined on chain whose intent is not settled with that transaction
* ``duplicated``        extra successful on-chain executions of the same trade
* ``non_final``         journal rows (transactions + intents) still not final
* ``mismatched``        journal statuses the chain contradicts (mined/reverted/not mined)

Usage::

    python scripts/chaos.py --trades 24               # starts its own devnet
    python scripts/chaos.py --rpc-url URL --deployment anvil/deployments/devnet.json

The wallet key is a devnet dev account's, passed to the child in an environment variable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

SCRIPT = str(Path(__file__).resolve())
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eth_abi import decode  # noqa: E402
from web3 import AsyncHTTPProvider, AsyncWeb3  # noqa: E402

from agent.chain.nonce import NonceManager  # noqa: E402
from agent.chain.tx import FeePolicy, StepHook, TransactionSender  # noqa: E402
from agent.devnet.deploy import Deployment, v2_pair_address, v3_pool_address  # noqa: E402
from agent.dex.pools import fetch_v2_pool, fetch_v3_pool  # noqa: E402
from agent.execution import (  # noqa: E402
    SEL_V2_SWAP_EXACT_TOKENS,
    SEL_V3_EXACT_INPUT_SINGLE,
    ChainExecutor,
    DexContracts,
    ExecutionSettings,
    Reconciler,
)
from agent.store import IntentStatus, Journal, TxStatus, init_db, session_factory  # noqa: E402
from agent.types import Intent, RouteHop  # noqa: E402
from agent.wallet.keystore import Signer  # noqa: E402

KEY_ENV = "CHAOS_PRIVATE_KEY"
WALLET_INDEX = 9  # the last funded devnet account: no test or simulated trader uses it
CRASH_STEPS = (
    "intent_recorded",
    "tx_signed",
    "tx_journaled",
    "tx_broadcast",
    "tx_marked_sent",
    "tx_receipt",
    "tx_marked_final",
    "approved",
    "settled",
)
POLICY = FeePolicy(max_fee_per_gas_cap_wei=500 * 10**9, priority_fee_wei=10**9)


# ---------------------------------------------------------------------------------------------
# The trades: deterministic per index, with amounts that identify the trade on chain


def trade_route(index: int, addresses: dict[str, str]) -> tuple[RouteHop, int]:
    """Route and ``amount_in`` (smallest units) of trade ``index``; ``amount_in`` ends in the
    index so an on-chain swap can be matched to its trade without the journal."""
    usdc, weth = addresses["USDC"], addresses["WETH"]
    kind = index % 3
    if kind == 0:
        pool = v2_pair_address(addresses["uniswap_v2.factory"], usdc, weth)
        return RouteHop(pool, "uniswap_v2", "v2", usdc, weth, 3000), 100 * 10**6 + index
    if kind == 1:
        pool = v2_pair_address(addresses["sushiswap.factory"], weth, usdc)
        return RouteHop(pool, "sushiswap", "v2", weth, usdc, 3000), 3 * 10**16 + index
    pool = v3_pool_address(addresses["uniswap_v3.factory"], usdc, weth, 500)
    return RouteHop(pool, "uniswap_v3", "v3", usdc, weth, 500), 150 * 10**6 + index


def trade_index_of(amount_in: int) -> int:
    """Inverse of ``trade_route``'s amounts."""
    for base in (100 * 10**6, 3 * 10**16, 150 * 10**6):
        if 0 <= amount_in - base < 10_000:
            return amount_in - base
    raise ValueError(f"amount {amount_in} is not a chaos trade")


def intent_id(index: int) -> str:
    return f"chaos-{index:04d}"


async def build_intent(w3: AsyncWeb3[Any], index: int, addresses: dict[str, str]) -> Intent:
    hop, amount_in = trade_route(index, addresses)
    if hop.kind == "v2":
        pool: Any = await fetch_v2_pool(w3, hop.pool, hop.fee_pips)
    else:
        pool = await fetch_v3_pool(w3, hop.pool)
    predicted = pool.quote_exact_input(hop.token_in, amount_in)
    return Intent(
        id=intent_id(index),
        strategy="chaos",
        kind="swap",
        route=(hop,),
        token_in=hop.token_in,
        token_out=hop.token_out,
        amount_in=amount_in,
        min_amount_out=0,
        predicted_amount_out=predicted,
        predicted_profit=0,
        predicted_profit_usd=0.0,
        deadline=int(time.time()) + 600,
    )


# ---------------------------------------------------------------------------------------------
# The child: recover, then trade until done (or killed)


async def make_stack(
    rpc_url: str, db: Path, private_key: str, on_step: StepHook | None
) -> tuple[AsyncWeb3[Any], Journal, TransactionSender, Any]:
    w3 = AsyncWeb3(AsyncHTTPProvider(rpc_url))
    engine = await init_db(f"sqlite:///{db}")
    journal = Journal(session_factory(engine))
    signer = Signer(bytes.fromhex(private_key.removeprefix("0x")))
    sender = TransactionSender(
        read_w3=w3,
        submit_w3=w3,
        signer=signer,
        nonces=NonceManager(w3, signer.address),
        journal=journal,
        chain_id=await w3.eth.chain_id,
        fee_policy=POLICY,
        on_step=on_step,
        receipt_poll_s=0.02,
    )
    return w3, journal, sender, engine


async def child_main(args: argparse.Namespace) -> None:
    seen: Counter[str] = Counter()

    async def on_step(step: str) -> None:
        seen[step] += 1
        if step == args.crash_step and seen[step] == args.crash_at:
            os.kill(os.getpid(), signal.SIGKILL)

    addresses = args.addresses
    w3, journal, sender, engine = await make_stack(
        args.rpc_url, Path(args.db), args.private_key, on_step
    )
    await Reconciler(sender, journal).reconcile(wait_s=20)
    executor = ChainExecutor(
        sender,
        journal,
        DexContracts.from_addresses(addresses),
        ExecutionSettings(mode="fork", receipt_timeout_s=30, replace_after_s=None),
        on_step=on_step,
    )
    known = {record.intent.id for record in await journal.list_intents()}
    for index in range(args.trades):
        if intent_id(index) in known:
            continue  # attempted before a crash: reconciliation owns it, never re-executed
        await executor.execute(await build_intent(w3, index, addresses))
    await engine.dispose()
    await w3.provider.disconnect()


# ---------------------------------------------------------------------------------------------
# The parent: kill, recover, compare


async def reconcile_and_verify(
    rpc_url: str, db: Path, private_key: str, start_block: int, trades: int
) -> dict[str, Any]:
    """Start-up reconciliation as a restarted process does it, then journal vs chain."""
    w3, journal, sender, engine = await make_stack(rpc_url, db, private_key, None)
    try:
        await Reconciler(sender, journal).reconcile(wait_s=20)
        return await verify(w3, journal, sender, start_block, trades)
    finally:
        await engine.dispose()
        await w3.provider.disconnect()


async def verify(
    w3: AsyncWeb3[Any], journal: Journal, sender: TransactionSender, start_block: int, trades: int
) -> dict[str, Any]:
    wallet = sender.address
    chain_txs: dict[str, dict[str, Any]] = {}
    latest = await w3.eth.block_number
    for number in range(start_block + 1, latest + 1):
        block = await w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if tx["from"] == wallet:
                chain_txs["0x" + bytes(tx["hash"]).hex()] = dict(tx)

    journal_txs = {tx.tx_hash: tx for tx in await journal.list_txs()}
    lost = len(set(chain_txs) - set(journal_txs))
    mismatched = 0
    for tx_hash, row in journal_txs.items():
        receipt = await sender.get_receipt(tx_hash)
        if row.status == TxStatus.MINED:
            mismatched += receipt is None or receipt.status != 1
        elif row.status == TxStatus.REVERTED:
            mismatched += receipt is None or receipt.status != 0
        elif row.status in (TxStatus.DROPPED, TxStatus.REPLACED):
            mismatched += receipt is not None

    successes: dict[int, list[str]] = {}
    for tx_hash, tx in chain_txs.items():
        data = bytes(tx["input"])
        receipt = await sender.get_receipt(tx_hash)
        if receipt is None or receipt.status != 1:
            continue
        if data[:4] == SEL_V2_SWAP_EXACT_TOKENS:
            amount_in = decode(["uint256"], data[4:36])[0]
        elif data[:4] == SEL_V3_EXACT_INPUT_SINGLE:
            amount_in = decode(
                ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"], data[4:]
            )[0][5]
        else:
            continue
        successes.setdefault(trade_index_of(int(amount_in)), []).append(tx_hash)
    duplicated = sum(len(hashes) - 1 for hashes in successes.values())
    for index, hashes in successes.items():
        fill = await journal.get_fill(intent_id(index))
        if fill is None or fill.tx_hash not in hashes:
            lost += 1
    records = await journal.list_intents()
    for record in records:
        if (
            record.status == IntentStatus.FILLED
            and trade_index_of(record.intent.amount_in) not in successes
        ):
            mismatched += 1
    non_final = len(await journal.list_non_final()) + len(await journal.list_non_final_intents())
    return {
        "trades_attempted": len(records),
        "statuses": dict(Counter(str(r.status) for r in records)),
        "chain_txs": len(chain_txs),
        "lost": lost,
        "duplicated": duplicated,
        "non_final": non_final,
        "mismatched": mismatched,
        "all_trades_journaled": len(records) == trades,
    }


async def run_child(
    args: argparse.Namespace, db: Path, crash_step: str, crash_at: int, kill_after_s: float | None
) -> str:
    """Run one child; returns how it ended: "done", "killed:<step>", "killed:external",
    or "error:<code>"."""
    command = [
        sys.executable,
        SCRIPT,
        "--child",
        "--rpc-url",
        args.rpc_url,
        "--deployment",
        str(args.deployment),
        "--db",
        str(db),
        "--trades",
        str(args.trades),
        "--crash-step",
        crash_step,
        "--crash-at",
        str(crash_at),
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        env={**os.environ, KEY_ENV: args.private_key},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    killed_externally = False
    try:
        if kill_after_s is not None:
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), kill_after_s)
            except TimeoutError:
                process.send_signal(signal.SIGKILL)
                killed_externally = True
        stderr = await process.stderr.read() if process.stderr else b""
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode == 0:
        return "done"
    if process.returncode == -signal.SIGKILL:
        return "killed:external" if killed_externally else f"killed:{crash_step}"
    sys.stderr.write(stderr.decode(errors="replace")[-3000:])
    return f"error:{process.returncode}"


async def parent_main(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="chaos-"))
    db = workdir / "chaos.db"
    w3 = AsyncWeb3(AsyncHTTPProvider(args.rpc_url))
    start_block = await w3.eth.block_number
    await w3.provider.disconnect()

    endings: Counter[str] = Counter()
    round_checks: list[dict[str, Any]] = []
    worst = {"lost": 0, "duplicated": 0, "mismatched": 0}
    for _round in range(args.max_rounds):
        if rng.random() < args.external_kill_ratio:
            ending = await run_child(args, db, "never", 0, rng.uniform(0.3, 4.0))
        else:
            ending = await run_child(
                args, db, rng.choice(CRASH_STEPS), rng.randint(1, 6), kill_after_s=None
            )
        endings[ending] += 1
        check = await reconcile_and_verify(
            args.rpc_url, db, args.private_key, start_block, args.trades
        )
        round_checks.append(check)
        for key in worst:
            worst[key] = max(worst[key], check[key])
        if ending.startswith("error"):
            break
        if ending == "done" and check["all_trades_journaled"]:
            break

    final = round_checks[-1]
    return {
        "trades_attempted": final["trades_attempted"],
        "trades_planned": args.trades,
        "lost": max(final["lost"], worst["lost"]),
        "duplicated": max(final["duplicated"], worst["duplicated"]),
        "non_final": final["non_final"],
        "mismatched": max(final["mismatched"], worst["mismatched"]),
        "kills": sum(n for ending, n in endings.items() if ending.startswith("killed")),
        "restarts": sum(endings.values()),
        "child_endings": dict(sorted(endings.items())),
        "intent_statuses": final["statuses"],
        "chain_txs": final["chain_txs"],
        "checks_after_each_restart": len(round_checks),
        "seed": args.seed,
    }


async def with_own_devnet(args: argparse.Namespace) -> dict[str, Any]:
    from agent.devnet import DEV_ACCOUNTS, Devnet

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="chaos-"))
    args.workdir = str(workdir)
    async with Devnet(deployments_dir=workdir) as devnet:
        args.rpc_url = devnet.rpc_url
        args.deployment = str(workdir / "devnet.json")
        args.private_key = args.private_key or DEV_ACCOUNTS[WALLET_INDEX][1]
        return await parent_main(args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trades", type=int, default=24)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--rpc-url")
    parser.add_argument("--deployment", help="devnet deployment JSON (with --rpc-url)")
    parser.add_argument("--workdir")
    parser.add_argument("--max-rounds", type=int, default=200)
    parser.add_argument("--external-kill-ratio", type=float, default=0.3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--crash-step", default="never", help=argparse.SUPPRESS)
    parser.add_argument("--crash-at", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.private_key = os.environ.get(KEY_ENV)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        args.addresses = Deployment.from_json(Path(args.deployment).read_text()).addresses
        asyncio.run(child_main(args))
        return 0
    if args.rpc_url:
        if not args.deployment:
            raise SystemExit("--rpc-url needs --deployment")
        if not args.private_key:
            from agent.devnet import DEV_ACCOUNTS

            args.private_key = DEV_ACCOUNTS[WALLET_INDEX][1]
        result = asyncio.run(parent_main(args))
    else:
        result = asyncio.run(with_own_devnet(args))
    print(json.dumps(result, sort_keys=True))
    ok = result["lost"] == 0 and result["duplicated"] == 0 and result["non_final"] == 0
    ok = ok and result["mismatched"] == 0 and result["trades_attempted"] == result["trades_planned"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
