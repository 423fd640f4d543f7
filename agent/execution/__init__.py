"""Intent -> transaction -> fill: one code path for live and fork, a paper executor beside it.

* ``chain``: ``ChainExecutor`` carries an intent out on a real chain (live) or an Anvil fork,
  with its settings, the router calldata encoders and the ArbExecutor deployment;
* ``paper``: ``PaperExecutor`` fills intents from local exact math, cross-checked on chain;
* ``reconcile``: ``Reconciler`` brings every non-final journal row in line with the chain;
* ``settlement``: realised amounts of an intent from its trade receipt (live path and
  reconciliation);
* ``finality``: ``FinalityWatch`` keeps each fill pending until ``execution.confirmations``
  and reconciles the fills a reorg moved or took out of the chain;
* ``common``: slippage floors, router selectors, DEX addresses and ``ExecutionOutcome``,
  shared by all of them (ERC20 selectors and reads live in ``agent.chain.abi``);
* ``balances``: the wallet's balances per block; ``tx_journal``: transactions in the journal.

Amounts are ``int`` in smallest units throughout; ``slippage_bps`` is in basis points.
"""

from __future__ import annotations

from agent.chain.abi import (
    SEL_ALLOWANCE,
    SEL_APPROVE,
    SEL_BALANCE_OF,
    erc20_allowance,
    erc20_balance,
)
from agent.execution.chain import (
    STEP_APPROVED,
    STEP_INTENT_RECORDED,
    STEP_SETTLED,
    ChainExecutor,
    ExecutionSettings,
    StepHook,
    SwapBuilder,
    deploy_arb_executor,
    encode_router_swap,
    encode_v3_path,
    settings_from_config,
)
from agent.execution.common import (
    AGGREGATOR_KIND,
    BPS,
    NO_AGGREGATOR,
    SEL_QUOTE_EXACT_INPUT_SINGLE,
    SEL_V2_GET_AMOUNTS_OUT,
    SEL_V2_SWAP_EXACT_TOKENS,
    SEL_V3_EXACT_INPUT,
    SEL_V3_EXACT_INPUT_SINGLE,
    DexContracts,
    ExecutionOutcome,
    is_aggregator_route,
    min_amount_out,
    min_profit,
)
from agent.execution.paper import (
    PaperExecutor,
)
from agent.execution.reconcile import (
    TRADE_PURPOSES,
    Reconciler,
    ReconcileReport,
)
from agent.execution.settlement import (
    fill_from_receipt,
)

__all__ = [
    "AGGREGATOR_KIND",
    "BPS",
    "NO_AGGREGATOR",
    "SEL_ALLOWANCE",
    "SEL_APPROVE",
    "SEL_BALANCE_OF",
    "SEL_QUOTE_EXACT_INPUT_SINGLE",
    "SEL_V2_GET_AMOUNTS_OUT",
    "SEL_V2_SWAP_EXACT_TOKENS",
    "SEL_V3_EXACT_INPUT",
    "SEL_V3_EXACT_INPUT_SINGLE",
    "STEP_APPROVED",
    "STEP_INTENT_RECORDED",
    "STEP_SETTLED",
    "TRADE_PURPOSES",
    "ChainExecutor",
    "DexContracts",
    "ExecutionOutcome",
    "ExecutionSettings",
    "PaperExecutor",
    "ReconcileReport",
    "Reconciler",
    "StepHook",
    "SwapBuilder",
    "deploy_arb_executor",
    "encode_router_swap",
    "encode_v3_path",
    "erc20_allowance",
    "erc20_balance",
    "fill_from_receipt",
    "is_aggregator_route",
    "min_amount_out",
    "min_profit",
    "settings_from_config",
]
