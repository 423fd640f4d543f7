"""Funding a wallet on a local Anvil fork of any chain (``dry-run --fork-url``), with real
tokens whose owners we do not control.

Three ways, tried in order until ``balanceOf`` says the wallet holds the amount:

1. ``anvil_dealERC20``: Anvil finds the token's balance slot itself.
2. Storage-slot discovery: ``eth_createAccessList`` of ``balanceOf(wallet)`` names the slots the
   token reads; each is written with ``anvil_setStorageAt`` and kept only if ``balanceOf`` then
   returns the amount (a packed slot, like USDC's balance-and-blacklist word, is found the same
   way); a slot that does not verify is restored.
3. A holder: an address that holds the token (the fork's own pools, largest first) is
   impersonated and transfers the amount, at most a tenth of what it holds; a V2 pair is then
   ``sync()``-ed so its reserves match its balance again.

Only ever used against a local fork: every method is an Anvil cheat code.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Literal

from agent.chain.abi import calldata_hex
from agent.devnet.jsonrpc import JsonRpc
from agent.errors import FatalError, JsonRpcError

log = logging.getLogger(__name__)

FundingMethod = Literal["deal", "storage", "holder"]
FUNDING_METHODS: tuple[FundingMethod, ...] = ("deal", "storage", "holder")
_HOLDER_SHARE = 10  # take at most 1/10 of a holder's balance


async def token_balance(rpc: JsonRpc, token: str, holder: str) -> int:
    data = calldata_hex("balanceOf(address)", ["address"], [holder])
    return int(await rpc.call("eth_call", [{"to": token, "data": data}, "latest"]), 16)


async def _deal(rpc: JsonRpc, token: str, account: str, amount: int, _: Sequence[str]) -> None:
    await rpc.call("anvil_dealERC20", [account, token, hex(amount)])


async def _storage(rpc: JsonRpc, token: str, account: str, amount: int, _: Sequence[str]) -> None:
    call = {"to": token, "data": calldata_hex("balanceOf(address)", ["address"], [account])}
    listed = await rpc.call("eth_createAccessList", [call, "latest"])
    word = "0x" + amount.to_bytes(32, "big").hex()
    for entry in listed.get("accessList", []):
        for slot in entry.get("storageKeys", []):
            original = await rpc.call("eth_getStorageAt", [entry["address"], slot, "latest"])
            await rpc.call("anvil_setStorageAt", [entry["address"], slot, word])
            if await token_balance(rpc, token, account) == amount:
                return
            await rpc.call("anvil_setStorageAt", [entry["address"], slot, original])


async def _holder(
    rpc: JsonRpc, token: str, account: str, amount: int, holders: Sequence[str]
) -> None:
    missing = amount - await token_balance(rpc, token, account)
    held = [(await token_balance(rpc, token, h), h) for h in holders]
    for balance, holder in sorted(held, reverse=True):
        if missing <= 0 or balance // _HOLDER_SHARE < missing:
            continue
        await rpc.call("anvil_setBalance", [holder, hex(10**18)])  # gas for the impersonated
        await rpc.call("anvil_impersonateAccount", [holder])
        try:
            transfer = calldata_hex(
                "transfer(address,uint256)", ["address", "uint256"], [account, missing]
            )
            await _mined(rpc, {"from": holder, "to": token, "data": transfer})
            # A V2 pair's reserves must match its balance again, or its next swap reverts.
            sync = {"from": holder, "to": holder, "data": calldata_hex("sync()", [], [])}
            with contextlib.suppress(FatalError):  # not a V2 pair: a V3 pool keeps no reserves
                await _mined(rpc, sync)
        finally:
            await rpc.call("anvil_stopImpersonatingAccount", [holder])
        return


async def _mined(rpc: JsonRpc, tx: dict[str, str]) -> None:
    tx_hash = await rpc.call("eth_sendTransaction", [{"gas": hex(300_000), **tx}])
    for _ in range(200):
        receipt = await rpc.call("eth_getTransactionReceipt", [tx_hash])
        if receipt is not None:
            if int(receipt["status"], 16) != 1:
                raise FatalError(f"funding transaction {tx_hash} reverted")
            return
        await rpc.call("evm_mine", [])
    raise FatalError(f"funding transaction {tx_hash} was not mined")


_FUNDERS = {"deal": _deal, "storage": _storage, "holder": _holder}


async def fund_token(
    rpc: JsonRpc,
    token: str,
    account: str,
    amount: int,
    *,
    holders: Sequence[str] = (),
    methods: Sequence[FundingMethod] = FUNDING_METHODS,
) -> FundingMethod:
    """Make ``account`` hold ``amount`` (smallest units) of ``token`` on a local fork; returns
    the method that worked (checked by ``balanceOf``). Raises ``FatalError`` when none did."""
    tried = []
    for method in methods:
        try:
            await _FUNDERS[method](rpc, token, account, amount, holders)
        except (JsonRpcError, FatalError) as exc:
            tried.append(f"{method}: {exc}")
            continue
        if await token_balance(rpc, token, account) >= amount:
            log.info("funded %s with %d of %s by %s", account, amount, token, method)
            return method
        tried.append(f"{method}: balanceOf did not change")
    raise FatalError(f"could not fund {account} with {token} ({'; '.join(tried)})")
