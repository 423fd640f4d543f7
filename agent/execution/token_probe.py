"""What a token really does with a transfer, measured before we trade it.

Some tokens take a fee on every transfer (PAXG), some refuse an account (USDC's and USDT's
blacklists, a paused token). Both break a plain router swap: a fee makes a V2 pair's ``K``
check or a V3 pool's balance check revert and our local math over-predict; a blocklist reverts
every attempt. So before a swap, one ``eth_simulateV1`` bundle (nothing is signed or sent)
transfers the amount from its real sender and reads the recipient's balance before and after:
what arrived is what the pool (or we) will really get.

Where a node does not serve ``eth_simulateV1`` the probe answers ``None`` and the trade goes
ahead as before (the transaction is still simulated with ``eth_call`` before it is signed).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from eth_abi import decode, encode
from eth_abi.exceptions import DecodingError
from web3 import AsyncWeb3
from web3.types import RPCEndpoint

from agent.chain.abi import selector
from agent.errors import TokenRefused

log = logging.getLogger(__name__)

_TRANSFER = selector("transfer(address,uint256)")
_BALANCE_OF = selector("balanceOf(address)")
_ERROR_STRING = selector("Error(string)")
PPM = 1_000_000


@dataclass(frozen=True, slots=True)
class TransferProbe:
    """``sent`` smallest units left the sender, ``arrived`` reached the recipient."""

    token: str
    sent: int
    arrived: int

    @property
    def arrived_ppm(self) -> int:
        """Millionths of what is sent that arrives (1,000,000: no fee)."""
        return PPM if self.sent == 0 else self.arrived * PPM // self.sent

    @property
    def takes_fee(self) -> bool:
        return self.arrived < self.sent


def _call(sender: str, to: str, data: bytes) -> dict[str, str]:
    return {"from": sender, "to": to, "data": "0x" + data.hex()}


def _revert_reason(call: dict[str, Any]) -> str:
    """``Error(string)``'s message from a reverted call's return data, else the node's words."""
    data = bytes.fromhex(str(call.get("returnData") or "0x")[2:])
    if data[:4] == _ERROR_STRING:
        with contextlib.suppress(ValueError, DecodingError):
            (message,) = decode(["string"], data[4:])
            return str(message)
    error = call.get("error")
    return str(error.get("message") or "reverted") if isinstance(error, dict) else "reverted"


def _balance(call: dict[str, Any]) -> int:
    (amount,) = decode(["uint256"], bytes.fromhex(str(call["returnData"])[2:])[:32])
    return int(amount)


async def probe_transfer(
    w3: AsyncWeb3[Any], token: str, sender: str, recipient: str, amount: int
) -> TransferProbe | None:
    """Simulate ``token.transfer(recipient, amount)`` from ``sender`` and measure what arrives.

    Raises ``TokenRefused`` when the transfer reverts for a reason other than the sender's
    balance; returns None when the node cannot simulate (no ``eth_simulateV1``).
    """
    balance = _BALANCE_OF + encode(["address"], [recipient])
    calls = [
        _call(sender, token, balance),
        _call(sender, token, _TRANSFER + encode(["address", "uint256"], [recipient, amount])),
        _call(sender, token, balance),
    ]
    reply = await w3.provider.make_request(
        RPCEndpoint("eth_simulateV1"), [{"blockStateCalls": [{"calls": calls}]}, "latest"]
    )
    if "error" in reply or not reply.get("result"):
        log.info("no transfer probe for %s: %s", token, reply.get("error"))
        return None
    before, transfer, after = reply["result"][0]["calls"]
    if int(str(transfer["status"]), 16) != 1:
        reason = _revert_reason(transfer)
        if "exceeds balance" in reason or "insufficient" in reason.lower():
            return None  # not ours to judge here: the swap's own simulation names it
        raise TokenRefused(token, reason)
    return TransferProbe(token, amount, _balance(after) - _balance(before))
