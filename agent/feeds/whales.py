"""Whale watcher: swaps of configured wallets on Uniswap V2 / V3-style pools, from logs.

One ``eth_getLogs`` per block range fetches, with a topic-0 filter, every

* V2 ``Swap(address indexed sender, uint amount0In, uint amount1In, uint amount0Out,
  uint amount1Out, address indexed to)``,
* V3 ``Swap(address indexed sender, address indexed recipient, int256 amount0, int256 amount1,
  uint160 sqrtPriceX96, uint128 liquidity, int24 tick)``,
* ERC20 ``Transfer(address indexed from, address indexed to, uint256 value)``

(optionally only from given contract addresses). No transaction lookups: a swap belongs to a
watched wallet when

1. the swap's output recipient (V2 ``to``, V3 ``recipient``) is the wallet, or
2. the same transaction holds a ``Transfer`` of the swap's input token from the wallet to the
   pool (the wallet paid the pool, as Router02 and SwapRouter make it do).

Amounts are the exact integers of the Swap event: V2 ``amountXIn`` / ``amountYOut``; V3 the
positive pool delta in and the negated negative delta out. Pool tokens come from a given
``pool -> (token0, token1)`` map (the pool registry) or, for unknown pools, one cached
``token0()``/``token1()`` read each.

Limits (documented, not hidden): a route through 3+ pools reports the hops the wallet paid into
or received from (first and last), not the middle; a trade whose output goes to a router that
forwards it (some aggregators) matches only through rule 2.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode
from eth_utils import to_checksum_address
from web3 import AsyncWeb3

from agent.chain.abi import event_topic
from agent.types import WhaleTrade

LogFetcher = Callable[[Mapping[str, Any], int, int], Awaitable[list[dict[str, Any]]]]
"""``(filter without the range, from_block, to_block) -> raw JSON-RPC logs``: how the wiring
reads logs within the provider's limits (``agent.chain.logs.get_logs``)."""


SWAP_V2_TOPIC = event_topic("Swap(address,uint256,uint256,uint256,uint256,address)")
SWAP_V3_TOPIC = event_topic("Swap(address,address,int256,int256,uint160,uint128,int24)")
TRANSFER_TOPIC = event_topic("Transfer(address,address,uint256)")
_TOKEN0 = "0x0dfe1681"  # token0()
_TOKEN1 = "0xd21220a7"  # token1()


@dataclass(frozen=True, slots=True)
class WalletTransfer:
    """An ERC20 transfer from or to a watched wallet (amount in the token's smallest units)."""

    wallet: str
    token: str
    sender: str
    receiver: str
    amount: int
    tx_hash: str
    block: int


@dataclass(frozen=True, slots=True)
class _Transfer:
    token: str
    sender: str
    receiver: str
    amount: int


@dataclass(frozen=True, slots=True)
class _Swap:
    pool: str
    recipient: str
    zero_for_one: bool  # token0 in, token1 out
    amount_in: int
    amount_out: int
    tx_hash: str
    block: int
    log_index: int


def _hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    text = str(value)
    return text if text.startswith("0x") else "0x" + text


def _topic_address(topic: Any) -> str:
    return to_checksum_address("0x" + _hex(topic)[-40:])


def _data(log: Mapping[str, Any]) -> bytes:
    raw = log["data"]
    return bytes(raw) if isinstance(raw, bytes | bytearray) else bytes.fromhex(str(raw)[2:])


def _raw_log(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-RPC log with its numbers as ints, as web3 formats them."""
    return {
        **entry,
        "blockNumber": int(str(entry["blockNumber"]), 16),
        "logIndex": int(str(entry["logIndex"]), 16),
    }


def _decode_swap(log: Mapping[str, Any], topic0: str) -> _Swap | None:
    pool = to_checksum_address(str(log["address"]))
    tx_hash, block, log_index = (
        _hex(log["transactionHash"]),
        int(log["blockNumber"]),
        int(log["logIndex"]),
    )
    recipient = _topic_address(log["topics"][2])
    if topic0 == SWAP_V2_TOPIC:
        amount0_in, amount1_in, amount0_out, amount1_out = decode(
            ["uint256", "uint256", "uint256", "uint256"], _data(log)
        )
        if amount0_in > 0 and amount1_out > 0:
            return _Swap(pool, recipient, True, amount0_in, amount1_out, tx_hash, block, log_index)
        if amount1_in > 0 and amount0_out > 0:
            return _Swap(pool, recipient, False, amount1_in, amount0_out, tx_hash, block, log_index)
        return None
    amount0, amount1, _, _, _ = decode(
        ["int256", "int256", "uint160", "uint128", "int24"], _data(log)
    )
    if amount0 > 0 > amount1:
        return _Swap(pool, recipient, True, amount0, -amount1, tx_hash, block, log_index)
    if amount1 > 0 > amount0:
        return _Swap(pool, recipient, False, amount1, -amount0, tx_hash, block, log_index)
    return None


class WhaleWatcher:
    """Reports :class:`WhaleTrade` for configured wallets, one ``eth_getLogs`` per range."""

    source = "whales"

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        wallets: Iterable[str],
        *,
        pool_tokens: Mapping[str, tuple[str, str]] | None = None,
        log_addresses: Sequence[str] | None = None,
        max_block_range: int = 500,
        logger: logging.Logger | None = None,
        fetch_logs: LogFetcher | None = None,
    ) -> None:
        self._w3 = w3
        self.wallets = frozenset(to_checksum_address(w) for w in wallets)
        self._pool_tokens: dict[str, tuple[str, str]] = {
            to_checksum_address(pool): (to_checksum_address(t0), to_checksum_address(t1))
            for pool, (t0, t1) in (pool_tokens or {}).items()
        }
        self.log_addresses = [to_checksum_address(a) for a in log_addresses or []]
        self._fetch_logs = fetch_logs
        self.max_block_range = max(1, max_block_range)
        self.log = logger if logger is not None else logging.getLogger("agent.feeds.whales")
        self.get_logs_calls = 0
        self.next_block: int | None = None
        self.transfers: list[WalletTransfer] = []

    async def scan(self, from_block: int, to_block: int | None = None) -> list[WhaleTrade]:
        """Trades of watched wallets in ``[from_block, to_block]`` (default: just one block),
        ordered by block and log index. One ``eth_getLogs`` per ``max_block_range`` blocks."""
        last = from_block if to_block is None else to_block
        trades: list[WhaleTrade] = []
        transfers: list[WalletTransfer] = []
        start = from_block
        while start <= last:
            end = min(last, start + self.max_block_range - 1)
            logs = await self._get_logs(start, end)
            chunk_trades, chunk_transfers = await self.decode(logs)
            trades += chunk_trades
            transfers += chunk_transfers
            start = end + 1
        self.transfers = transfers
        return trades

    async def poll(self) -> list[WhaleTrade]:
        """Trades in the blocks mined since the previous poll (the first poll reads the
        latest block only). An RPC failure raises and leaves the cursor where it was, so the
        next poll covers the missed blocks."""
        latest = int(await self._w3.eth.block_number)
        first = latest if self.next_block is None else self.next_block
        if first > latest:
            return []
        trades = await self.scan(first, latest)
        self.next_block = latest + 1
        return trades

    async def _get_logs(self, from_block: int, to_block: int) -> list[Any]:
        params: dict[str, Any] = {
            "fromBlock": from_block,
            "toBlock": to_block,
            "topics": [[SWAP_V2_TOPIC, SWAP_V3_TOPIC, TRANSFER_TOPIC]],
        }
        if self.log_addresses:
            params["address"] = self.log_addresses
        self.get_logs_calls += 1
        if self._fetch_logs is not None:
            # within the provider's limits: a range it refuses is split and asked again
            query = {k: v for k, v in params.items() if k not in ("fromBlock", "toBlock")}
            logs = await self._fetch_logs(query, from_block, to_block)
            return [_raw_log(entry) for entry in logs]
        return list(await self._w3.eth.get_logs(params))  # type: ignore[arg-type]

    async def decode(
        self, logs: Sequence[Mapping[str, Any]]
    ) -> tuple[list[WhaleTrade], list[WalletTransfer]]:
        """Decode one ``eth_getLogs`` answer into wallet trades and wallet transfers."""
        swaps: list[_Swap] = []
        transfers_by_tx: dict[str, list[_Transfer]] = defaultdict(list)
        wallet_transfers: list[WalletTransfer] = []
        for log in logs:
            topics = log["topics"]
            if not topics:
                continue
            topic0 = _hex(topics[0])
            if topic0 == TRANSFER_TOPIC:
                if len(topics) != 3:  # ERC721 Transfer indexes the token id too
                    continue
                (amount,) = decode(["uint256"], _data(log))
                transfer = _Transfer(
                    to_checksum_address(str(log["address"])),
                    _topic_address(topics[1]),
                    _topic_address(topics[2]),
                    int(amount),
                )
                tx_hash = _hex(log["transactionHash"])
                transfers_by_tx[tx_hash].append(transfer)
                for wallet in {transfer.sender, transfer.receiver} & self.wallets:
                    wallet_transfers.append(
                        WalletTransfer(
                            wallet,
                            transfer.token,
                            transfer.sender,
                            transfer.receiver,
                            transfer.amount,
                            tx_hash,
                            int(log["blockNumber"]),
                        )
                    )
            elif topic0 in (SWAP_V2_TOPIC, SWAP_V3_TOPIC) and len(topics) == 3:
                swap = _decode_swap(log, topic0)
                if swap is not None:
                    swaps.append(swap)
        trades: list[WhaleTrade] = []
        for swap in sorted(swaps, key=lambda s: (s.block, s.log_index)):
            token0, token1 = await self._tokens_of(swap.pool)
            token_in, token_out = (token0, token1) if swap.zero_for_one else (token1, token0)
            owner = self._wallet_of(swap, token_in, transfers_by_tx.get(swap.tx_hash, []))
            if owner is None:
                continue
            trades.append(
                WhaleTrade(
                    wallet=owner,
                    token_in=token_in,
                    token_out=token_out,
                    amount_in=swap.amount_in,
                    amount_out=swap.amount_out,
                    pool=swap.pool,
                    tx_hash=swap.tx_hash,
                    block=swap.block,
                )
            )
        return trades, wallet_transfers

    def _wallet_of(self, swap: _Swap, token_in: str, transfers: list[_Transfer]) -> str | None:
        if swap.recipient in self.wallets:
            return swap.recipient
        for transfer in transfers:
            if (
                transfer.sender in self.wallets
                and transfer.receiver == swap.pool
                and transfer.token == token_in
            ):
                return transfer.sender
        return None

    async def _tokens_of(self, pool: str) -> tuple[str, str]:
        tokens = self._pool_tokens.get(pool)
        if tokens is None:
            # An unknown pool: two reads once, then cached (V2 pairs and V3 pools both have
            # token0()/token1()).
            raw0 = await self._w3.eth.call({"to": pool, "data": _TOKEN0})  # type: ignore[typeddict-item]
            raw1 = await self._w3.eth.call({"to": pool, "data": _TOKEN1})  # type: ignore[typeddict-item]
            tokens = (
                to_checksum_address("0x" + bytes(raw0)[-20:].hex()),
                to_checksum_address("0x" + bytes(raw1)[-20:].hex()),
            )
            self._pool_tokens[pool] = tokens
        return tokens
