"""The wallet's token balances per block: read on chain (live, fork) or from the journal's
virtual portfolio (paper). Amounts are ``int`` in each token's smallest unit."""

from __future__ import annotations

from eth_abi import decode, encode

from agent.chain.abi import SEL_BALANCE_OF
from agent.chain.multicall import Call, Multicall
from agent.store.journal import Journal


class BalanceReader:
    """ERC20 balances of the agent's accounts in one multicall per block."""

    def __init__(self, multicall: Multicall, tokens: list[str], holders: list[str]) -> None:
        self.multicall = multicall
        self.holders = list(holders)
        self.calls = [
            (token, Call(token, SEL_BALANCE_OF + encode(["address"], [holder])))
            for holder in holders
            for token in tokens
        ]

    async def balances(self, block: int) -> dict[str, int]:
        totals: dict[str, int] = {}
        for held in (await self.by_holder(block)).values():
            for token, amount in held.items():
                totals[token] = totals.get(token, 0) + amount
        return totals

    async def by_holder(self, block: int) -> dict[str, dict[str, int]]:
        """Each holder's balances (token address -> smallest units) at ``block``."""
        result = await self.multicall.aggregate([c for _, c in self.calls], block)
        held: dict[str, dict[str, int]] = {holder: {} for holder in self.holders}
        per_holder = len(self.calls) // max(1, len(self.holders))
        for index, ((token, _), answer) in enumerate(zip(self.calls, result.results, strict=True)):
            if answer.success and len(answer.return_data) >= 32:
                (amount,) = decode(["uint256"], answer.return_data[:32])
                holder = held[self.holders[index // per_holder]]
                holder[token] = holder.get(token, 0) + int(amount)
        return held


class PaperBalances:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def balances(self, block: int) -> dict[str, int]:
        return await self.journal.paper_balances()
