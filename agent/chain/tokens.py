"""Which tokens the agent trades: config references resolved to tokens read from the chain.

``market.tokens`` names tokens by registry symbol (``"WBTC"``), by a symbol declared in
``market.token_addresses`` (``LINK = "0x..."``) or by a ``0x`` address. Every one is checked on
chain in one multicall: ``decimals()`` must answer (and match the registry where the registry
knows the token: a mismatch means a wrong address), ``symbol()`` is read for display (string or
bytes32, as older tokens return it). A symbol that differs from the registry's name is only
logged: registries disambiguate (``USDC.e`` beside ``USDC``) where the token itself may not.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils import to_checksum_address

from agent.chain.abi import selector
from agent.chain.multicall import Call, CallResult, Multicall
from agent.chain.registry import ChainAddresses
from agent.errors import ConfigError
from agent.types import Token

log = logging.getLogger(__name__)

_DECIMALS = selector("decimals()")
_SYMBOL = selector("symbol()")


def token_address(ref: str, chain: ChainAddresses, token_addresses: Mapping[str, str]) -> str:
    """The address ``ref`` (a symbol or a 0x address) names. Raises ``ConfigError``."""
    if ref.startswith("0x"):
        return str(to_checksum_address(ref))
    for symbol, address in token_addresses.items():
        if symbol.upper() == ref.upper():
            return str(to_checksum_address(address))
    known = chain.token(ref)
    if known is None:
        raise ConfigError(
            f"market.tokens: unknown token {ref!r} on chain {chain.chain}: use its 0x address, "
            f"or name it in [market.token_addresses] (known: {', '.join(chain.tokens)})"
        )
    return known.address


def decode_symbol(answer: CallResult) -> str | None:
    """``symbol()``'s answer as text: an ABI string, or a bytes32 padded with zeros."""
    if not answer.success or len(answer.return_data) < 32:
        return None
    data = answer.return_data
    if len(data) >= 96:
        try:
            (text,) = decode(["string"], data)
            return str(text)
        except (DecodingError, UnicodeDecodeError, OverflowError):
            pass
    return data[:32].rstrip(b"\0").decode("utf-8", errors="replace") or None


async def resolve_tokens(
    refs: Sequence[str],
    chain: ChainAddresses,
    token_addresses: Mapping[str, str],
    multicall: Multicall,
) -> dict[str, Token]:
    """``{address: Token}`` for ``refs`` with decimals and symbols read on chain.

    Raises ``ConfigError`` naming every token that has no code or no ``decimals()``, or whose
    decimals differ from the registry's.
    """
    addresses = list(dict.fromkeys(token_address(ref, chain, token_addresses) for ref in refs))
    calls = [Call(a, selector) for a in addresses for selector in (_DECIMALS, _SYMBOL)]
    answer = await multicall.aggregate(calls)
    declared: dict[str, str] = {str(to_checksum_address(a)): s for s, a in token_addresses.items()}
    tokens: dict[str, Token] = {}
    problems: list[str] = []
    for index, address in enumerate(addresses):
        decimals_answer, symbol_answer = answer.results[2 * index : 2 * index + 2]
        known = chain.token(address)
        name = declared.get(address) or (known.symbol if known else address)
        if not decimals_answer.success or len(decimals_answer.return_data) < 32:
            problems.append(f"{name} ({address}): no decimals() on chain {chain.chain}")
            continue
        decimals = int.from_bytes(decimals_answer.return_data[:32], "big")
        if decimals > 77:
            problems.append(f"{name} ({address}): decimals() answered {decimals}")
            continue
        if known is not None and known.decimals != decimals:
            problems.append(
                f"{name} ({address}): {decimals} decimals on chain, the registry says "
                f"{known.decimals}"
            )
            continue
        on_chain_symbol = decode_symbol(symbol_answer)
        symbol = declared.get(address) or (known.symbol if known else None)
        if symbol is None:
            symbol = on_chain_symbol or address
        elif on_chain_symbol is not None and on_chain_symbol.upper() != symbol.upper():
            log.warning(
                "token %s: configured as %s, its symbol() is %s", address, symbol, on_chain_symbol
            )
        tokens[address] = Token(address, symbol, decimals)
    if problems:
        raise ConfigError("market.tokens:\n" + "\n".join(f"  {p}" for p in problems))
    return tokens
