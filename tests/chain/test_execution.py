"""Intents executed on the devnet: an atomic ArbExecutor arbitrage whose realised profit equals
the local prediction to the wei, router swaps with exact approvals and slippage floors, the
paper executor, and reconciliation after a crash at every step of the pipeline."""

from __future__ import annotations

import asyncio
import os
import sys
import tomllib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from web3 import AsyncWeb3

from agent.chain.abi import UNISWAP_V2_PAIR_INIT_CODE_HASH, v2_pair_address, v3_pool_address
from agent.chain.tx import (
    STEP_BROADCAST,
    STEP_JOURNALED,
    STEP_MARKED_FINAL,
    STEP_MARKED_SENT,
    STEP_RECEIPT,
    STEP_SIGNED,
    TransactionSender,
)
from agent.devnet import Devnet
from agent.dex.pools import fetch_v2_pool, fetch_v3_pool
from agent.execution import (
    ChainExecutor,
    DexContracts,
    ExecutionSettings,
    PaperExecutor,
    Reconciler,
    deploy_arb_executor,
    erc20_allowance,
    erc20_balance,
)
from agent.execution.policy import SigningPolicy
from agent.store import IntentStatus, Journal, TxStatus
from agent.types import Intent, RouteHop
from agent.wallet.keystore import create_keystore
from tests.chain._execution_helpers import journal_at, make_sender
from tests.conftest import load_abi

pytestmark = pytest.mark.chain

FAR_DEADLINE = 2**40
REPO_ROOT = Path(__file__).resolve().parents[2]
APPROVAL_TOPIC = AsyncWeb3.keccak(text="Approval(address,address,uint256)")


@dataclass
class Env:
    w3: AsyncWeb3
    devnet: Devnet
    journal: Journal
    sender: TransactionSender
    contracts: DexContracts
    key: str
    db: Path

    @property
    def wallet(self) -> str:
        return self.sender.address

    def executor(self, **settings: Any) -> ChainExecutor:
        return ChainExecutor(
            self.sender,
            self.journal,
            self.contracts,
            ExecutionSettings(mode="fork", receipt_timeout_s=30, **settings),
        )

    def token(self, symbol: str) -> str:
        return self.devnet.addresses[symbol]

    def guarded(self, arb_executor: str | None = None) -> DexContracts:
        """The contracts with ``arb_executor``; the sender's signing policy allowlists them."""
        contracts = replace(self.contracts, arb_executor=arb_executor)
        self.sender.guard = SigningPolicy(
            self.w3,
            self.wallet,
            contracts,
            watched_tokens=[self.token(s) for s in ("WETH", "USDC", "DAI")],
        )
        return contracts


@pytest.fixture
async def env(w3: AsyncWeb3, devnet: Devnet, tmp_path: Path) -> AsyncIterator[Env]:
    _, key = devnet.accounts[4]
    db = tmp_path / "agent.db"
    async with journal_at(db) as journal:
        sender = await make_sender(w3, key, journal)
        env = Env(
            w3, devnet, journal, sender, DexContracts.from_addresses(devnet.addresses), key, db
        )
        env.guarded()  # every trade of these tests passes the signing policy
        yield env


def v2_hop(env: Env, dex: str, token_in: str, token_out: str) -> RouteHop:
    a = env.devnet.addresses
    pool = v2_pair_address(a[f"{dex}.factory"], a[token_in], a[token_out])
    return RouteHop(pool, dex, "v2", a[token_in], a[token_out], 3000)


def v3_hop(env: Env, token_in: str, token_out: str, fee_pips: int) -> RouteHop:
    a = env.devnet.addresses
    pool = v3_pool_address(a["uniswap_v3.factory"], a[token_in], a[token_out], fee_pips)
    return RouteHop(pool, "uniswap_v3", "v3", a[token_in], a[token_out], fee_pips)


async def predict(w3: AsyncWeb3, route: tuple[RouteHop, ...], amount_in: int) -> int:
    """Local exact math over freshly read pool state (no quoter, no eth_call of the swap)."""
    amount = amount_in
    for hop in route:
        if hop.kind == "v2":
            pool = await fetch_v2_pool(w3, hop.pool, hop.fee_pips)
        else:
            pool = await fetch_v3_pool(w3, hop.pool)
        amount = pool.quote_exact_input(hop.token_in, amount)
    return amount


def make_intent(
    kind: str, route: tuple[RouteHop, ...], amount_in: int, predicted_out: int, **extra: Any
) -> Intent:
    fields: dict[str, Any] = {
        "id": f"{kind}-{uuid.uuid4().hex[:12]}",
        "strategy": "test",
        "kind": kind,
        "route": route,
        "token_in": route[0].token_in,
        "token_out": route[-1].token_out,
        "amount_in": amount_in,
        "min_amount_out": 0,
        "predicted_amount_out": predicted_out,
        "predicted_profit": predicted_out - amount_in if kind == "arb" else 0,
        "predicted_profit_usd": 0.0,
        "deadline": FAR_DEADLINE,
    }
    fields.update(extra)
    return Intent(**fields)


async def transfer_token(w3: AsyncWeb3, token: str, sender: str, to: str, amount: int) -> None:
    erc20 = w3.eth.contract(address=AsyncWeb3.to_checksum_address(token), abi=load_abi("ERC20"))
    tx_hash = await erc20.functions.transfer(to, amount).transact({"from": sender})
    assert (await w3.eth.wait_for_transaction_receipt(tx_hash))["status"] == 1


async def open_price_gap(env: Env) -> None:
    """A whale sells 400k USDC for WETH on uniswap_v2 through its router: WETH is now dear there
    compared with sushiswap and the V3 pools."""
    whale = env.devnet.accounts[2][0]
    router = env.w3.eth.contract(
        address=env.devnet.addresses["uniswap_v2.router"], abi=load_abi("UniswapV2Router02")
    )
    usdc_in = 400_000 * 10**6
    usdc = env.w3.eth.contract(address=env.token("USDC"), abi=load_abi("ERC20"))
    approve_hash = await usdc.functions.approve(router.address, usdc_in).transact({"from": whale})
    # Anvil answers before it has mined: wait, or the swap's gas estimate sees no allowance.
    assert (await env.w3.eth.wait_for_transaction_receipt(approve_hash))["status"] == 1
    tx_hash = await router.functions.swapExactTokensForTokens(
        usdc_in, 0, [env.token("USDC"), env.token("WETH")], whale, FAR_DEADLINE
    ).transact({"from": whale})
    assert (await env.w3.eth.wait_for_transaction_receipt(tx_hash))["status"] == 1


async def arb_setup(env: Env) -> tuple[str, tuple[RouteHop, ...]]:
    """Deploy ArbExecutor from our wallet, fund it with 20 WETH, open the gap; the cycle is
    WETH -> USDC (uniswap_v2) -> DAI (V3 0.01 %) -> WETH (sushiswap)."""
    a = env.devnet.addresses
    executor = await deploy_arb_executor(
        env.sender,
        a["uniswap_v3.factory"],
        {
            a["uniswap_v2.factory"]: UNISWAP_V2_PAIR_INIT_CODE_HASH,
            a["sushiswap.factory"]: UNISWAP_V2_PAIR_INIT_CODE_HASH,
        },
    )
    await transfer_token(env.w3, a["WETH"], env.devnet.accounts[2][0], executor, 20 * 10**18)
    await open_price_gap(env)
    route = (
        v2_hop(env, "uniswap_v2", "WETH", "USDC"),
        v3_hop(env, "USDC", "DAI", 100),
        v2_hop(env, "sushiswap", "DAI", "WETH"),
    )
    return executor, route


async def balances(env: Env, holders: list[str], symbols: list[str]) -> dict[tuple[str, str], int]:
    return {
        (symbol, holder): await erc20_balance(env.w3, env.token(symbol), holder)
        for symbol in symbols
        for holder in holders
    }


async def test_arbitrage_realises_the_predicted_profit_to_the_wei(env: Env) -> None:
    executor, route = await arb_setup(env)
    amount_in = 20 * 10**18
    predicted_out = await predict(env.w3, route, amount_in)
    assert predicted_out - amount_in > 10**17  # the engineered gap is worth capturing
    intent = make_intent("arb", route, amount_in, predicted_out)
    before = await erc20_balance(env.w3, env.token("WETH"), executor)

    outcome = await ChainExecutor(
        env.sender,
        env.journal,
        env.guarded(executor),
        ExecutionSettings(mode="fork", slippage_bps=0, receipt_timeout_s=30),
    ).execute(intent)

    assert outcome.status == IntentStatus.FILLED, outcome.detail
    fill = outcome.fill
    assert fill is not None
    assert fill.profit == intent.predicted_profit  # to the wei
    assert fill.amount_in == amount_in and fill.amount_out == predicted_out
    assert await erc20_balance(env.w3, env.token("WETH"), executor) == before + fill.profit
    assert await env.journal.get_fill(intent.id) == fill
    (trade,) = [t for t in await env.journal.txs_for_intent(intent.id)]
    assert (trade.purpose, trade.status, trade.to_address) == ("arb", TxStatus.MINED, executor)
    assert fill.gas_cost_wei > 0


async def test_arbitrage_above_the_available_profit_reverts_and_nothing_moves(env: Env) -> None:
    executor, route = await arb_setup(env)
    amount_in = 20 * 10**18
    available = await predict(env.w3, route, amount_in) - amount_in
    # Ask for one wei more than the gap holds, with no slippage allowance.
    intent = make_intent("arb", route, amount_in, amount_in + available + 1)
    holders = [executor, env.wallet, *(hop.pool for hop in route)]
    before = await balances(env, holders, ["WETH", "USDC", "DAI"])
    nonce_before = await env.w3.eth.get_transaction_count(env.wallet)

    outcome = await ChainExecutor(
        env.sender,
        env.journal,
        env.guarded(executor),
        ExecutionSettings(mode="fork", slippage_bps=0, receipt_timeout_s=30),
    ).execute(intent)

    assert outcome.status == IntentStatus.FAILED
    assert outcome.detail is not None and outcome.detail.startswith("InsufficientProfit(")
    assert await balances(env, holders, ["WETH", "USDC", "DAI"]) == before
    assert await env.w3.eth.get_transaction_count(env.wallet) == nonce_before  # nothing sent
    assert await env.journal.txs_for_intent(intent.id) == []
    assert (await env.journal.get_intent(intent.id)).status == IntentStatus.FAILED


async def test_arbitrage_without_capital_borrows_through_a_v2_flash_swap(env: Env) -> None:
    a = env.devnet.addresses
    executor = await deploy_arb_executor(
        env.sender,
        a["uniswap_v3.factory"],
        {
            a["uniswap_v2.factory"]: UNISWAP_V2_PAIR_INIT_CODE_HASH,
            a["sushiswap.factory"]: UNISWAP_V2_PAIR_INIT_CODE_HASH,
        },
    )
    await open_price_gap(env)
    route = (
        v2_hop(env, "uniswap_v2", "WETH", "USDC"),
        v3_hop(env, "USDC", "DAI", 100),
        v2_hop(env, "sushiswap", "DAI", "WETH"),
    )
    amount_in = 10 * 10**18
    predicted_out = await predict(env.w3, route, amount_in)
    intent = make_intent("arb", route, amount_in, predicted_out)
    assert await erc20_balance(env.w3, env.token("WETH"), executor) == 0  # no capital at all

    outcome = await ChainExecutor(
        env.sender,
        env.journal,
        env.guarded(executor),
        ExecutionSettings(mode="fork", slippage_bps=0, receipt_timeout_s=30),
    ).execute(intent)

    assert outcome.status == IntentStatus.FILLED, outcome.detail
    assert outcome.fill is not None and outcome.fill.profit == intent.predicted_profit
    assert await erc20_balance(env.w3, env.token("WETH"), executor) == intent.predicted_profit


async def test_concurrent_swaps_of_one_token_keep_their_exact_approvals_apart(env: Env) -> None:
    route = (v2_hop(env, "uniswap_v2", "USDC", "WETH"),)
    executor = env.executor()
    amounts = [1_000 * 10**6 + i for i in range(4)]
    intents = [make_intent("swap", route, amount, 0) for amount in amounts]
    usdc_before = await erc20_balance(env.w3, env.token("USDC"), env.wallet)

    outcomes = await asyncio.gather(*(executor.execute(i) for i in intents))

    assert [o.status for o in outcomes] == [IntentStatus.FILLED] * 4, [o.detail for o in outcomes]
    spent = usdc_before - await erc20_balance(env.w3, env.token("USDC"), env.wallet)
    assert spent == sum(amounts)
    router = env.devnet.addresses["uniswap_v2.router"]
    assert await erc20_allowance(env.w3, env.token("USDC"), env.wallet, router) == 0


async def test_v2_swap_approves_exactly_and_fills_as_predicted(env: Env) -> None:
    route = (v2_hop(env, "sushiswap", "USDC", "WETH"),)
    amount_in = 12_345 * 10**6 + 7
    predicted = await predict(env.w3, route, amount_in)
    intent = make_intent("swap", route, amount_in, predicted)
    weth_before = await erc20_balance(env.w3, env.token("WETH"), env.wallet)
    usdc_before = await erc20_balance(env.w3, env.token("USDC"), env.wallet)

    outcome = await env.executor().execute(intent)

    assert outcome.status == IntentStatus.FILLED, outcome.detail
    assert outcome.fill is not None
    assert (outcome.fill.amount_in, outcome.fill.amount_out) == (amount_in, predicted)
    assert await erc20_balance(env.w3, env.token("WETH"), env.wallet) == weth_before + predicted
    assert await erc20_balance(env.w3, env.token("USDC"), env.wallet) == usdc_before - amount_in
    router = env.devnet.addresses["sushiswap.router"]
    # The approval was for exactly amount_in, and the swap used all of it.
    assert await erc20_allowance(env.w3, env.token("USDC"), env.wallet, router) == 0
    approve_tx, swap_tx = await env.journal.txs_for_intent(intent.id)
    assert (approve_tx.purpose, swap_tx.purpose) == ("approve", "swap")
    receipt = await env.sender.get_receipt(approve_tx.tx_hash)
    assert receipt is not None
    (approval,) = [log for log in receipt.logs if log.topics[0] == APPROVAL_TOPIC]
    assert int.from_bytes(approval.data, "big") == amount_in


async def test_v3_multihop_swap_resets_a_leftover_allowance_first(env: Env) -> None:
    route = (v3_hop(env, "WETH", "USDC", 500), v3_hop(env, "USDC", "DAI", 100))
    amount_in = 3 * 10**18 + 11
    predicted = await predict(env.w3, route, amount_in)
    intent = make_intent("swap", route, amount_in, predicted)
    executor = env.executor()
    router = env.devnet.addresses["uniswap_v3.swap_router"]
    await executor.ensure_exact_allowance(None, env.token("WETH"), router, 1)  # a leftover
    dai_before = await erc20_balance(env.w3, env.token("DAI"), env.wallet)

    outcome = await executor.execute(intent)

    assert outcome.status == IntentStatus.FILLED, outcome.detail
    assert outcome.fill is not None and outcome.fill.amount_out == predicted
    assert await erc20_balance(env.w3, env.token("DAI"), env.wallet) == dai_before + predicted
    purposes = [t.purpose for t in await env.journal.txs_for_intent(intent.id)]
    assert purposes == ["approve", "approve", "swap"]  # to 0, then to exactly amount_in
    assert await erc20_allowance(env.w3, env.token("WETH"), env.wallet, router) == 0


async def test_v3_single_swap_and_slippage_floor(env: Env) -> None:
    route = (v3_hop(env, "USDC", "WETH", 3000),)
    amount_in = 5_000 * 10**6
    predicted = await predict(env.w3, route, amount_in)
    # A prediction 1 % too optimistic with a 0.5 % slippage limit: the router must refuse.
    greedy = make_intent("swap", route, amount_in, predicted * 101 // 100)
    outcome = await env.executor(slippage_bps=50).execute(greedy)
    assert outcome.status == IntentStatus.FAILED
    assert outcome.detail == "Too little received"

    honest = make_intent("swap", route, amount_in, predicted)
    outcome = await env.executor(slippage_bps=50).execute(honest)
    assert outcome.status == IntentStatus.FILLED and outcome.fill is not None
    assert outcome.fill.amount_out == predicted


async def test_paper_executor_fills_from_math_checked_by_eth_call(env: Env) -> None:
    usdc, weth = env.token("USDC"), env.token("WETH")
    paper = PaperExecutor(env.w3, env.journal, env.contracts, slippage_bps=50)
    await env.journal.seed_paper_balances({usdc: 10_000 * 10**6, weth: 2 * 10**18})
    route = (v3_hop(env, "USDC", "WETH", 500),)
    amount_in = 3_000 * 10**6
    predicted = await predict(env.w3, route, amount_in)
    nonce_before = await env.w3.eth.get_transaction_count(env.wallet)

    outcome = await paper.execute(make_intent("swap", route, amount_in, predicted))

    assert outcome.status == IntentStatus.FILLED and outcome.fill is not None
    assert outcome.fill.amount_out == predicted and outcome.fill.tx_hash is None
    assert await env.journal.paper_balances() == {usdc: 7_000 * 10**6, weth: 2 * 10**18 + predicted}
    assert await env.w3.eth.get_transaction_count(env.wallet) == nonce_before  # nothing sent

    too_big = make_intent("swap", route, 8_000 * 10**6, await predict(env.w3, route, 8_000 * 10**6))
    refused = await paper.execute(too_big)
    assert refused.status == IntentStatus.FAILED
    assert await env.journal.paper_balances() == {usdc: 7_000 * 10**6, weth: 2 * 10**18 + predicted}


class Crash(BaseException):
    """Stands in for SIGKILL inside one process: nothing below the crash point runs."""


@pytest.mark.parametrize(
    "crash_step",
    [
        STEP_SIGNED,
        STEP_JOURNALED,
        STEP_BROADCAST,
        STEP_MARKED_SENT,
        STEP_RECEIPT,
        STEP_MARKED_FINAL,
    ],
)
async def test_reconciliation_after_a_crash_at_each_step(env: Env, crash_step: str) -> None:
    route = (v2_hop(env, "uniswap_v2", "USDC", "WETH"),)
    amount_in = 1_000 * 10**6
    router = env.devnet.addresses["uniswap_v2.router"]
    await env.executor().ensure_exact_allowance(None, env.token("USDC"), router, amount_in)
    predicted = await predict(env.w3, route, amount_in)
    intent = make_intent("swap", route, amount_in, predicted)
    weth_before = await erc20_balance(env.w3, env.token("WETH"), env.wallet)

    async def crash_at(step: str) -> None:
        if step == crash_step:
            raise Crash(step)

    doomed = await make_sender(env.w3, env.key, env.journal, on_step=crash_at)
    with pytest.raises(Crash):
        await ChainExecutor(
            doomed, env.journal, env.contracts, ExecutionSettings(mode="fork")
        ).execute(intent)

    # "Restart": a fresh sender and nonce manager, then reconciliation before anything else.
    restarted = await make_sender(env.w3, env.key, env.journal)
    report = await Reconciler(restarted, env.journal).reconcile(wait_s=10)

    record = await env.journal.get_intent(intent.id)
    assert await env.journal.list_non_final() == []
    assert await env.journal.list_non_final_intents() == []
    weth_gained = await erc20_balance(env.w3, env.token("WETH"), env.wallet) - weth_before
    if crash_step == STEP_SIGNED:
        # Signed but never journaled or sent: nothing reached the chain, nothing is repeated.
        assert record.status == IntentStatus.CANCELLED
        assert weth_gained == 0
    else:
        # Journaled before broadcast: it is on chain (rebroadcast if need be) and settled once.
        assert record.status == IntentStatus.FILLED, (record.status_detail, report)
        fill = await env.journal.get_fill(intent.id)
        assert fill is not None and fill.amount_out == predicted == weth_gained
    if crash_step == STEP_JOURNALED:
        assert report.rebroadcast == 1

    # The account's next nonce follows the chain after the restart.
    follow_up = make_intent("swap", route, 10**6, await predict(env.w3, route, 10**6))
    outcome = await ChainExecutor(
        restarted, env.journal, env.contracts, ExecutionSettings(mode="fork", receipt_timeout_s=30)
    ).execute(follow_up)
    assert outcome.status == IntentStatus.FILLED, outcome.detail


async def test_cli_executor_deploy_with_a_cold_owner_and_withdraw_to_it(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path
) -> None:
    address, key = devnet.accounts[4]
    cold_owner = devnet.accounts[8][0]
    keystore = tmp_path / "keystore.json"
    create_keystore(keystore, SecretStr("pw-for-deploy"), bytes.fromhex(key[2:]), scrypt_n=2**12)
    deployment = tmp_path / "devnet.json"
    deployment.write_text(devnet.deployment.to_json() if devnet.deployment else "")
    config = tmp_path / "agent.toml"
    config.write_text(
        f"""
[chain]
name = "devnet"
chain_id = 31337
rpc_urls = ["{devnet.rpc_url}"]
deployment_file = "{deployment}"

[wallet]
keystore = "{keystore}"
password_env = "DEPLOY_TEST_PASSWORD"

[store]
url = "sqlite+aiosqlite:///{tmp_path / "agent.db"}"
"""
    )

    async def cli(*arguments: str) -> tuple[str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent",
            *arguments,
            "--config",
            str(config),
            cwd=tmp_path,
            env={
                **os.environ,
                "DEPLOY_TEST_PASSWORD": "pw-for-deploy",
                "PYTHONPATH": str(REPO_ROOT),
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        assert "pw-for-deploy" not in (stdout + stderr).decode()
        assert key[2:] not in (stdout + stderr).decode().lower()
        return stdout.decode(), stderr.decode()

    stdout, _ = await cli("executor", "deploy", "--owner", cold_owner)
    executor = stdout.strip().splitlines()[-1]
    assert AsyncWeb3.is_checksum_address(executor)
    assert len(await w3.eth.get_code(executor)) > 0
    contract = w3.eth.contract(address=executor, abi=load_abi("ArbExecutor"))
    assert await contract.functions.owner().call() == cold_owner
    assert await contract.functions.executor().call() == address  # the keystore key trades

    # profits pile up in the executor; `executor withdraw` (the hot key) sweeps them to the owner
    weth = devnet.addresses["WETH"]
    await transfer_token(w3, weth, devnet.accounts[2][0], executor, 3 * 10**18)
    cold_before = await erc20_balance(w3, weth, cold_owner)
    hot_before = await erc20_balance(w3, weth, address)
    # `executor deploy` wrote the address into the config
    assert tomllib.loads(config.read_text())["execution"]["arb_executor"] == executor
    stdout, _ = await cli("executor", "withdraw", "--token", "WETH")
    assert f"swept {3 * 10**18}" in stdout and cold_owner in stdout
    assert await erc20_balance(w3, weth, executor) == 0
    assert await erc20_balance(w3, weth, cold_owner) == cold_before + 3 * 10**18
    assert await erc20_balance(w3, weth, address) == hot_before
