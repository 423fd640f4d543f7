"""EIP-1559 transactions: fees, simulation, signing, broadcast, tracking, replacement.

Every send follows the same order, which is what makes a crash at any instant recoverable:

    eth_call simulation (revert reason decoded) -> estimateGas + margin -> fees (capped)
    -> nonce -> sign -> journal (hash, nonce, raw bytes) -> broadcast via the submit RPC
    -> journal "sent"

The journal is a ``TxJournal`` handed in by the caller (``agent.execution.tx_journal`` writes
it to the store): this module knows when each step must be recorded, not where.

Reads (simulation, estimates, receipts, nonces) go to ``read_w3``; the signed bytes go only to
``submit_w3`` (for example a private-mempool RPC, ``private_submit``: its nonces are then held
locally while pending), as raw ``eth_sendRawTransaction``. Bundles (``agent.chain.bundle``)
share the first half of this path (``sign_and_journal``) and go to relays instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak
from web3 import AsyncWeb3
from web3.exceptions import TransactionNotFound
from web3.types import RPCEndpoint

from agent.chain.abi import selector
from agent.chain.gas import GasOracle
from agent.chain.l1fee import receipt_fee_fields, unsigned_tx_bytes
from agent.chain.nonce import NonceManager
from agent.errors import (
    AgentError,
    BroadcastRejected,
    FatalError,
    FeeCapExceeded,
    NonceTooLow,
    SigningRefused,
    SimulationRevert,
    TemporaryError,
)
from agent.types import GasPrice, Intent
from agent.wallet.keystore import Signer

log = logging.getLogger(__name__)

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)
PANIC_CODES = {
    0x00: "generic compiler panic",
    0x01: "assert failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "corrupt storage byte array",
    0x31: "pop on an empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to a zero-initialised function pointer",
}
TRANSFER_TOPIC = keccak(text="Transfer(address,address,uint256)")

# Steps reported to a ``StepHook`` (observability, and the chaos harness's crash points).
STEP_SIGNED = "tx_signed"
STEP_JOURNALED = "tx_journaled"
STEP_BROADCAST = "tx_broadcast"
STEP_MARKED_SENT = "tx_marked_sent"
STEP_RECEIPT = "tx_receipt"
STEP_MARKED_FINAL = "tx_marked_final"
STEP_REBROADCAST = "tx_rebroadcast"

RevertDecoder = Callable[[bytes], str | None]
StepHook = Callable[[str], Awaitable[None]]


# How long a receipt may lag behind the account nonce (Anvil right after mining, RPC load
# balancers mixing nodes) before a transaction whose nonce was used is called lost. Tracking,
# "nonce too low" handling and start-up reconciliation all use it.
RECEIPT_GRACE_S = 5.0


class TxJournal(Protocol):
    """Where the sender records each step of a transaction's life, before the next I/O."""

    async def signed(self, tx: SentTx, chain_id: int, sender: str) -> None:
        """``tx`` is signed and about to be broadcast (its nonce is spent from here on)."""

    async def sent(self, tx_hash: str) -> None:
        """The submit RPC accepted ``tx_hash``."""

    async def rejected(self, tx_hash: str, reason: str) -> None:
        """The node refused ``tx_hash`` outright: it is in no mempool."""

    async def settled(self, receipt: Receipt, siblings: Sequence[str]) -> None:
        """``receipt`` mined (status 1 or 0); the other ``siblings`` (same nonce) lost."""


class FeeOracle(Protocol):
    """Anything that reads the next block's fee picture; ``agent.chain.gas.GasOracle`` (the
    default, ``eth_feeHistory`` percentiles) or a test double serving fixed fees."""

    async def gas_price(self) -> GasPrice: ...


# ---------------------------------------------------------------------------------------------
# Revert reasons


def decode_revert(revert_data: bytes, decoders: Sequence[RevertDecoder] = ()) -> str:
    """Human-readable revert reason: ``Error(string)``, ``Panic(uint256)``, then each custom-error
    decoder in turn (e.g. ``agent.chain.arb_executor.decode_arb_executor_error``)."""
    if not revert_data:
        return "reverted without data"
    selector, payload = revert_data[:4], revert_data[4:]
    try:
        if selector == ERROR_STRING_SELECTOR:
            (message,) = decode(["string"], payload)
            return str(message)
        if selector == PANIC_SELECTOR:
            (code,) = decode(["uint256"], payload)
            return f"Panic(0x{code:02x}: {PANIC_CODES.get(code, 'unknown panic code')})"
    except DecodingError:
        pass
    for decoder in decoders:
        decoded = decoder(revert_data)
        if decoded is not None:
            return decoded
    return f"unknown revert 0x{revert_data.hex()}"


def custom_error_decoder(abi: Sequence[Mapping[str, Any]]) -> RevertDecoder:
    """A decoder for the custom errors declared in a contract ABI (by 4-byte selector)."""
    errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
    for entry in abi:
        if entry.get("type") != "error":
            continue
        types = [_abi_type(i) for i in entry.get("inputs", [])]
        names = [str(i.get("name", "")) for i in entry.get("inputs", [])]
        signature = f"{entry['name']}({','.join(types)})"
        errors[selector(signature)] = (str(entry["name"]), names, types)

    def _decode(revert_data: bytes) -> str | None:
        spec = errors.get(revert_data[:4])
        if spec is None:
            return None
        name, names, types = spec
        try:
            values = decode(types, revert_data[4:]) if types else ()
        except DecodingError:
            return None
        return f"{name}({', '.join(f'{n}={v}' for n, v in zip(names, values, strict=True))})"

    return _decode


def _abi_type(param: Mapping[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param.get("components", []))
        return f"({inner}){kind[5:]}"
    return kind


def _revert_data_from_error(error: Mapping[str, Any]) -> bytes | None:
    """Revert bytes from a JSON-RPC error object (``data`` is a hex string on Anvil and geth;
    some nodes nest it as ``{"data": ...}``)."""
    data = error.get("data")
    if isinstance(data, Mapping):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None


# ---------------------------------------------------------------------------------------------
# Value types


@dataclass(frozen=True, slots=True)
class FeePolicy:
    """How fees are chosen. All values in wei per gas unless named otherwise.

    ``max_fee_per_gas_cap_wei`` is never exceeded (``FeeCapExceeded`` instead). ``max_fee`` =
    next base fee x ``base_fee_multiplier_pct`` / 100 + priority, capped. The gas limit is the
    estimate plus ``gas_limit_margin_bps``. Replacements bump both fee fields by
    ``replacement_bump_bps`` (nodes require at least 10 %).
    """

    max_fee_per_gas_cap_wei: int
    priority_fee_wei: int | None = None  # None: the oracle's suggestion
    priority_fee_cap_wei: int | None = None
    base_fee_multiplier_pct: int = 200
    gas_limit_margin_bps: int = 2_000
    # Absolute headroom on top of the estimate. An estimate made within the same second as the
    # latest block cannot see timestamp-dependent writes that the real block will do (Uniswap
    # V2 price accumulators, V3 oracle observations: up to two fresh SSTOREs, ~45k gas, for
    # every pool the transaction crosses). 60k once covered one pool; a two-pool arbitrage
    # over pairs whose accumulators were still zero used 305,114 gas of an estimate of
    # 245,771 + 60,000 and reverted. Unused gas is not charged, so headroom costs nothing but
    # a higher worst case.
    min_gas_headroom: int = 150_000
    replacement_bump_bps: int = 1_250


@dataclass(frozen=True, slots=True)
class Fees:
    """EIP-1559 fee fields, wei per gas. ``legacy``: a type-0 transaction on a chain without
    a base fee; both fields then hold its ``gasPrice``."""

    max_fee_per_gas_wei: int
    max_priority_fee_per_gas_wei: int
    legacy: bool = False

    def bumped(self, bump_bps: int) -> Fees:
        """Both fields raised by at least ``bump_bps`` (rounded up, and by at least 1 wei)."""

        def up(value: int) -> int:
            return max(value + 1, -(-value * (10_000 + bump_bps) // 10_000))

        return Fees(
            up(self.max_fee_per_gas_wei), up(self.max_priority_fee_per_gas_wei), self.legacy
        )


@dataclass(frozen=True, slots=True)
class TxMandate:
    """What a transaction is meant to do; the signing guard holds its calldata and simulated
    balance changes to it. Amounts in smallest units.

    ``action``: "approve" (allowance of exactly ``amount`` of ``token`` for ``spender``), "swap"
    (a router swap of ``intent``), "aggregator_swap" (1inch), each paying the wallet at least
    ``min_out`` of the intent's ``token_out``; "arb" (ArbExecutor, profit at least ``min_out``);
    "withdraw" (ArbExecutor sweep of at most ``amount`` of ``token`` to its owner); "deploy";
    "cancel" (0-value transfer to ourselves).
    """

    action: str
    intent: Intent | None = None
    token: str | None = None
    spender: str | None = None
    amount: int = 0
    min_out: int = 0


@dataclass(frozen=True, slots=True)
class TxRequest:
    """What to send: ``to`` (``None`` deploys ``data`` as creation code), calldata, value in wei.
    ``gas_limit`` skips estimation when set. ``purpose`` labels the journal row; ``mandate``
    says what the transaction is meant to do (the signing guard refuses it otherwise)."""

    to: str | None
    data: bytes = b""
    value_wei: int = 0
    gas_limit: int | None = None
    purpose: str = "call"
    mandate: TxMandate | None = None


class SigningGuard(Protocol):
    """Decides, immediately before the key signs, whether ``request`` is what the agent meant
    (``agent.execution.policy.SigningPolicy``). Raises to refuse; nothing is signed then."""

    async def check(self, request: TxRequest) -> None: ...

    async def vet(self, request: TxRequest) -> None:
        """The checks that need no simulation (target, calldata), to run before a trade's
        approval is granted."""
        ...


@dataclass(frozen=True, slots=True)
class SentTx:
    """A transaction signed, journaled and handed to the submit RPC."""

    tx_hash: str
    nonce: int
    request: TxRequest
    gas_limit: int
    fees: Fees
    intent_id: str | None
    raw_tx: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class LogEntry:
    address: str
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class Receipt:
    """The parts of a receipt the agent uses. ``effective_gas_price_wei`` in wei per gas."""

    tx_hash: str
    status: int
    block_number: int
    gas_used: int
    effective_gas_price_wei: int
    logs: tuple[LogEntry, ...]
    contract_address: str | None
    # The L1 data fee (wei) when the node reports it (op-geth's ``l1Fee``, Arbitrum's
    # ``gasUsedForL1`` x price); ``None`` when it does not (an Anvil replica of an L2).
    l1_fee_wei: int | None = None
    # The hash of the block that holds it: a reorg that replaces that block changes it.
    block_hash: str | None = None
    # Arbitrum: the L2 gas inside ``gas_used`` that paid for L1 data (``gasUsedForL1``).
    l1_gas_used: int = 0
    # OP stack since Isthmus: the operator fee (wei) once settled; what the node reported
    # for it (``operatorFeeScalar``, ``operatorFeeConstant``), if anything.
    operator_fee_wei: int | None = None
    operator_fee_reported: tuple[int, int] | None = None

    @property
    def gas_cost_wei(self) -> int:
        """L2 execution cost (the operator fee included); the L1 fee is :attr:`l1_fee_wei`."""
        execution = (self.gas_used - self.l1_gas_used) * self.effective_gas_price_wei
        return execution + (self.operator_fee_wei or 0)


def receipt_from_web3(raw: Mapping[str, Any]) -> Receipt:
    """Convert web3's receipt AttributeDict into a ``Receipt``."""
    logs = tuple(
        LogEntry(
            address=AsyncWeb3.to_checksum_address(entry["address"]),
            topics=tuple(bytes(t) for t in entry["topics"]),
            data=bytes(entry["data"]),
        )
        for entry in raw["logs"]
    )
    contract = raw.get("contractAddress")
    return Receipt(
        tx_hash="0x" + bytes(raw["transactionHash"]).hex(),
        status=int(raw["status"]),
        block_number=int(raw["blockNumber"]),
        gas_used=int(raw["gasUsed"]),
        effective_gas_price_wei=int(raw.get("effectiveGasPrice", 0)),
        logs=logs,
        contract_address=AsyncWeb3.to_checksum_address(contract) if contract else None,
        block_hash="0x" + bytes(raw["blockHash"]).hex() if raw.get("blockHash") else None,
        **receipt_fee_fields(raw),
    )


def token_transfers(receipt: Receipt, token: str) -> list[tuple[str, str, int]]:
    """(from, to, amount in smallest units) of every ERC20 ``Transfer`` of ``token`` in the logs."""
    token = AsyncWeb3.to_checksum_address(token)
    transfers: list[tuple[str, str, int]] = []
    for entry in receipt.logs:
        if entry.address != token or len(entry.topics) != 3 or entry.topics[0] != TRANSFER_TOPIC:
            continue
        sender = AsyncWeb3.to_checksum_address(entry.topics[1][-20:])
        recipient = AsyncWeb3.to_checksum_address(entry.topics[2][-20:])
        transfers.append((sender, recipient, int.from_bytes(entry.data[:32], "big")))
    return transfers


def net_token_flow(receipt: Receipt, token: str, account: str) -> int:
    """Smallest units of ``token`` that ``account`` gained (negative: lost) in this receipt."""
    account = AsyncWeb3.to_checksum_address(account)
    net = 0
    for sender, recipient, amount in token_transfers(receipt, token):
        if recipient == account:
            net += amount
        if sender == account:
            net -= amount
    return net


# ---------------------------------------------------------------------------------------------
# The sender


class TransactionSender:
    """Builds, simulates, signs, journals, broadcasts and tracks one account's transactions."""

    def __init__(
        self,
        read_w3: AsyncWeb3[Any],
        submit_w3: AsyncWeb3[Any],
        signer: Signer,
        nonces: NonceManager,
        journal: TxJournal | None,
        chain_id: int,
        fee_policy: FeePolicy,
        fee_oracle: FeeOracle | None = None,
        revert_decoders: Sequence[RevertDecoder] = (),
        on_step: StepHook | None = None,
        receipt_poll_s: float = 0.1,
        mempool_check_s: float = 10.0,
        guard: SigningGuard | None = None,
        receipt_grace_s: float = RECEIPT_GRACE_S,
        private_submit: bool = False,
    ) -> None:
        if nonces.address != signer.address:
            raise FatalError(f"nonce manager is for {nonces.address}, signer is {signer.address}")
        self.read_w3 = read_w3
        self.submit_w3 = submit_w3
        self.signer = signer
        self.nonces = nonces
        self.journal = journal
        self.chain_id = chain_id
        self.fee_policy = fee_policy
        self.fee_oracle: FeeOracle = fee_oracle or GasOracle(read_w3)
        self.revert_decoders = tuple(revert_decoders)
        self._on_step = on_step
        self.receipt_poll_s = receipt_poll_s
        self.mempool_check_s = mempool_check_s  # how often tracking checks for eviction
        # Between every caller and the key: nothing is signed that it refuses.
        self.guard = guard
        self.receipt_grace_s = receipt_grace_s
        # ``submit_w3`` is a private RPC (protect mode): its pending transactions are invisible
        # to the read node, so their nonces are held in the nonce manager.
        self.private_submit = private_submit

    @property
    def address(self) -> str:
        return self.signer.address

    async def _step(self, name: str) -> None:
        if self._on_step is not None:
            await self._on_step(name)

    # -- reading ----------------------------------------------------------------------------

    def _call_params(self, request: TxRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "from": self.address,
            "data": "0x" + request.data.hex(),
            "value": hex(request.value_wei),
        }
        if request.to is not None:
            params["to"] = request.to
        return params

    async def _rpc(self, w3: AsyncWeb3[Any], method: str, params: list[Any]) -> Any:
        response = await w3.provider.make_request(RPCEndpoint(method), params)
        error = response.get("error")
        if error is not None:
            if not isinstance(error, Mapping):
                raise BroadcastRejected(str(error))
            revert_data = _revert_data_from_error(error)
            message = str(error.get("message", error))
            is_execution = method in ("eth_call", "eth_estimateGas")
            if is_execution and (revert_data is not None or "revert" in message.lower()):
                reason = decode_revert(revert_data or b"", self.revert_decoders)
                if revert_data is None:
                    reason = message
                raise SimulationRevert(reason, revert_data or b"")
            raise _rpc_error(method, message)
        return response.get("result")

    async def simulate(self, request: TxRequest, block: str = "latest") -> bytes:
        """``eth_call`` of ``request`` from our address; the return data, or ``SimulationRevert``
        with the decoded reason."""
        result = await self._rpc(self.read_w3, "eth_call", [self._call_params(request), block])
        return bytes.fromhex(str(result).removeprefix("0x"))

    async def estimate_gas(self, request: TxRequest) -> int:
        """``eth_estimateGas`` plus the policy's margin (relative, at least the absolute
        headroom), in gas units."""
        result = await self._rpc(self.read_w3, "eth_estimateGas", [self._call_params(request)])
        estimate = int(str(result), 16)
        margin = estimate * self.fee_policy.gas_limit_margin_bps // 10_000
        return estimate + max(margin, self.fee_policy.min_gas_headroom)

    async def suggest_fees(self) -> Fees:
        """Fees for the next block under the policy; ``FeeCapExceeded`` if the cap is too low."""
        policy = self.fee_policy
        gas = await self.fee_oracle.gas_price()
        if gas.legacy:
            # One price per gas (the oracle's percentile of what recent blocks paid).
            if gas.max_fee_wei > policy.max_fee_per_gas_cap_wei:
                raise FeeCapExceeded(
                    f"gas price {gas.max_fee_wei} wei/gas is above the cap "
                    f"{policy.max_fee_per_gas_cap_wei}"
                )
            return Fees(gas.max_fee_wei, gas.max_fee_wei, legacy=True)
        priority = (
            policy.priority_fee_wei if policy.priority_fee_wei is not None else gas.priority_fee_wei
        )
        if policy.priority_fee_cap_wei is not None:
            priority = min(priority, policy.priority_fee_cap_wei)
        needed = gas.next_base_fee_wei + priority
        if needed > policy.max_fee_per_gas_cap_wei:
            raise FeeCapExceeded(
                f"next base fee {gas.next_base_fee_wei} + tip {priority} wei/gas is above the "
                f"cap {policy.max_fee_per_gas_cap_wei}"
            )
        wanted = gas.next_base_fee_wei * policy.base_fee_multiplier_pct // 100 + priority
        return Fees(min(wanted, policy.max_fee_per_gas_cap_wei), priority)

    # -- sending ----------------------------------------------------------------------------

    async def send(
        self,
        request: TxRequest,
        intent_id: str | None = None,
        fees: Fees | None = None,
        simulate: bool = True,
    ) -> SentTx:
        """Simulate, size, price, sign, journal (before broadcast), broadcast, journal "sent".

        Raises ``SimulationRevert`` before anything is signed when the call would revert.
        "nonce too low" resyncs the nonce manager and retries with a fresh nonce (twice).
        """
        if simulate:
            await self.simulate(request)
        gas_limit = request.gas_limit or await self.estimate_gas(request)
        fees = fees or await self.suggest_fees()
        for attempt in range(3):
            nonce = await self.nonces.allocate()
            try:
                return await self._sign_journal_broadcast(
                    request, nonce, gas_limit, fees, intent_id
                )
            except NonceTooLow:
                log.warning(
                    "nonce %d too low for %s; resyncing (attempt %d)",
                    nonce,
                    self.address,
                    attempt + 1,
                )
                await self.nonces.resync()
        raise TemporaryError(f"could not find a usable nonce for {self.address}")

    async def unsigned_preview(self, request: TxRequest) -> bytes:
        """The unsigned serialization :meth:`send` would sign for ``request`` now (same gas
        estimate, fees and next nonce): what an L2's L1 fee oracle prices. Raises as
        :meth:`estimate_gas` does when the call would revert."""
        gas_limit = request.gas_limit or await self.estimate_gas(request)
        fees = await self.suggest_fees()
        nonce = self.nonces.next_nonce
        if nonce is None:
            nonce = int(
                await self.read_w3.eth.get_transaction_count(
                    AsyncWeb3.to_checksum_address(self.address), "pending"
                )
            )
        return unsigned_tx_bytes(self._tx_fields(request, nonce, gas_limit, fees))

    def _tx_fields(
        self, request: TxRequest, nonce: int, gas_limit: int, fees: Fees
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": nonce,
            "value": request.value_wei,
            "data": request.data,
            "gas": gas_limit,
            "maxFeePerGas": fees.max_fee_per_gas_wei,
            "maxPriorityFeePerGas": fees.max_priority_fee_per_gas_wei,
        }
        if fees.legacy:
            # Type 0 (EIP-155: the chain id is inside the signature) for a pre-London chain.
            fields = {
                "chainId": self.chain_id,
                "nonce": nonce,
                "value": request.value_wei,
                "data": request.data,
                "gas": gas_limit,
                "gasPrice": fees.max_fee_per_gas_wei,
            }
        if request.to is not None:
            fields["to"] = AsyncWeb3.to_checksum_address(request.to)
        return fields

    async def _sign_journal_broadcast(
        self,
        request: TxRequest,
        nonce: int,
        gas_limit: int,
        fees: Fees,
        intent_id: str | None,
        nonce_is_new: bool = True,
    ) -> SentTx:
        signed = await self.sign_and_journal(
            request, nonce, gas_limit, fees, intent_id, nonce_is_new
        )
        # From here on the transaction exists in the journal: its nonce is never handed back.
        try:
            await self.broadcast(signed.raw_tx)
        except BroadcastRejected as exc:
            # The node refused it outright: nothing is in any mempool under this hash.
            if self.journal is not None:
                await self.journal.rejected(signed.tx_hash, exc.reason)
            if nonce_is_new and not isinstance(exc, NonceTooLow):
                await self.nonces.release(nonce)
            raise
        # Any other failure (timeout, connection reset) is ambiguous: the node may have it. The
        # row stays "signed" and tracking or start-up reconciliation rebroadcasts it.
        await self._step(STEP_BROADCAST)
        if self.private_submit:
            # the public node's pending count does not see it: keep its nonce ours
            await self.nonces.hold(nonce)
        elif nonce_is_new:
            await self.nonces.mark_broadcast(nonce)
        if self.journal is not None:
            await self.journal.sent(signed.tx_hash)
        await self._step(STEP_MARKED_SENT)
        log.info("sent %s %s nonce=%d", request.purpose, signed.tx_hash, nonce)
        return signed

    async def sign_and_journal(
        self,
        request: TxRequest,
        nonce: int,
        gas_limit: int,
        fees: Fees,
        intent_id: str | None,
        nonce_is_new: bool = True,
    ) -> SentTx:
        """The signing guard's check (simulation, the risk gate's last look), the signature and
        the journal row, in that order; a refusal or failure hands a new nonce back."""
        try:
            if self.guard is not None:
                await self.guard.check(request)
            signed = self.signer.sign_transaction(self._tx_fields(request, nonce, gas_limit, fees))
            await self._step(STEP_SIGNED)
            sent = SentTx(signed.hash, nonce, request, gas_limit, fees, intent_id, signed.raw)
            if self.journal is not None:
                await self.journal.signed(sent, self.chain_id, self.address)
        except BaseException:
            if nonce_is_new:
                await self.nonces.release(nonce)
            raise
        await self._step(STEP_JOURNALED)
        return sent

    async def broadcast(self, raw_tx: bytes) -> str:
        """``eth_sendRawTransaction`` on the submit RPC; "already known" counts as success."""
        try:
            result = await self._rpc(
                self.submit_w3, "eth_sendRawTransaction", ["0x" + raw_tx.hex()]
            )
        except BroadcastRejected as exc:
            tx_hash = "0x" + keccak(raw_tx).hex()
            lowered = exc.reason.lower()
            if (
                "already known" in lowered
                or "already imported" in lowered
                or "known transaction" in lowered
            ):
                return tx_hash
            # A retried send whose first attempt reached the node (its reply was lost) is
            # refused as "nonce too low": it is ours and on its way, not a failure. Treating it
            # as one would sign the trade again under a new nonce and send it twice. A lagging
            # read node may not know it yet: "nonce too low" gets the receipt grace.
            grace_s = self.receipt_grace_s if isinstance(exc, NonceTooLow) else 0.0
            if await self._known_within(tx_hash, grace_s):
                log.info("broadcast of %s was refused, but the node already has it", tx_hash)
                return tx_hash
            raise
        return str(result)

    async def _known_within(self, tx_hash: str, grace_s: float) -> bool:
        """Whether the read node has a receipt for ``tx_hash`` or knows it as pending, within
        ``grace_s`` seconds (a node behind the one that took it learns of it late)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while True:
            for method in ("eth_getTransactionReceipt", "eth_getTransactionByHash"):
                if await self._rpc(self.read_w3, method, [tx_hash]) is not None:
                    return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(self.receipt_poll_s)

    async def past_deadline(self, request: TxRequest) -> bool:
        """Whether the latest block is past the deadline of the intent ``request`` serves (the
        chain's clock, which the contracts check): such a transaction can only revert."""
        intent = request.mandate.intent if request.mandate is not None else None
        if intent is None:
            return False
        block = await self.read_w3.eth.get_block("latest")
        return int(block["timestamp"]) >= intent.deadline

    async def replace(self, sent: SentTx, fees: Fees | None = None) -> SentTx:
        """Re-sign ``sent``'s request with the same nonce and fees bumped by the policy (or
        ``fees``), journal it, broadcast it. Either of the two may mine, never both.

        The replacement is simulated first (``SimulationRevert``: nothing signed) and passes
        the signing guard like any transaction."""
        if await self.past_deadline(sent.request):
            raise SimulationRevert(f"deadline of {sent.tx_hash}'s intent has passed")
        await self.simulate(sent.request)
        new_fees = fees or await self._replacement_fees(sent.fees)
        log.warning("replacing %s (nonce %d) with higher fees", sent.tx_hash, sent.nonce)
        return await self._sign_journal_broadcast(
            sent.request, sent.nonce, sent.gas_limit, new_fees, sent.intent_id, nonce_is_new=False
        )

    async def cancel(self, sent: SentTx) -> SentTx:
        """Replace ``sent`` with a 0-value transfer to ourselves at the same nonce."""
        request = TxRequest(
            to=self.address,
            data=b"",
            value_wei=0,
            gas_limit=21_000,
            purpose="cancel",
            mandate=TxMandate("cancel"),
        )
        await self.simulate(request)
        new_fees = await self._replacement_fees(sent.fees)
        log.warning("cancelling %s (nonce %d)", sent.tx_hash, sent.nonce)
        return await self._sign_journal_broadcast(
            request, sent.nonce, 21_000, new_fees, sent.intent_id, nonce_is_new=False
        )

    async def _replacement_fees(self, old: Fees) -> Fees:
        bumped = old.bumped(self.fee_policy.replacement_bump_bps)
        try:
            current = await self.suggest_fees()
        except FeeCapExceeded:
            current = bumped
        fees = Fees(
            max(bumped.max_fee_per_gas_wei, current.max_fee_per_gas_wei),
            max(bumped.max_priority_fee_per_gas_wei, current.max_priority_fee_per_gas_wei),
            old.legacy,
        )
        if fees.max_fee_per_gas_wei > self.fee_policy.max_fee_per_gas_cap_wei:
            raise FeeCapExceeded(
                f"a replacement needs {fees.max_fee_per_gas_wei} wei/gas, above the cap "
                f"{self.fee_policy.max_fee_per_gas_cap_wei}"
            )
        return fees

    # -- tracking ---------------------------------------------------------------------------

    async def get_receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt if ``tx_hash`` is mined, else ``None``."""
        try:
            raw = await self.read_w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        return receipt_from_web3(raw)

    async def replay_revert_reason(self, tx_hash: str) -> str:
        """Why a mined transaction reverted: replay it with ``eth_call`` on the state of the
        block before (exact unless an earlier transaction in its block changed the outcome)."""
        tx = await self.read_w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        request = TxRequest(
            to=tx.get("to"), data=bytes(tx.get("input", b"")), value_wei=int(tx.get("value", 0))
        )
        params = self._call_params(request)
        params["from"] = tx["from"]
        params["gas"] = hex(int(tx["gas"]))
        block = int(tx["blockNumber"] or 1) - 1
        try:
            await self._rpc(self.read_w3, "eth_call", [params, hex(block)])
        except SimulationRevert as exc:
            return exc.reason
        receipt = await self.get_receipt(tx_hash)
        used = receipt.gas_used if receipt is not None else "?"
        return (
            f"reverted on chain (gas used {used} of {int(tx['gas'])}), but not when replayed "
            f"at block {block}"
        )

    async def wait_for_receipt(self, tx_hashes: Sequence[str], timeout_s: float) -> Receipt | None:
        """Poll until one of ``tx_hashes`` (same nonce: original and replacements) is mined;
        ``None`` after ``timeout_s`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            for tx_hash in tx_hashes:
                receipt = await self.get_receipt(tx_hash)
                if receipt is not None:
                    await self._step(STEP_RECEIPT)
                    return receipt
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(self.receipt_poll_s)

    async def record_outcome(self, receipt: Receipt, siblings: Sequence[str] = ()) -> None:
        """Journal the mined (or reverted) transaction and mark its same-nonce siblings replaced."""
        if self.journal is not None:
            await self.journal.settled(receipt, siblings)
        await self._step(STEP_MARKED_FINAL)

    async def track(
        self,
        sent: SentTx,
        timeout_s: float = 120.0,
        stuck_after_s: float | None = None,
        max_replacements: int = 3,
    ) -> tuple[Receipt, SentTx]:
        """Wait for ``sent`` to mine, replacing it with bumped fees each time it has waited
        ``stuck_after_s`` seconds (at most ``max_replacements`` times). Journals the outcome.

        Returns the receipt and the transaction that mined (the original or a replacement).
        Raises ``TemporaryError`` on timeout; the journal rows stay non-final for the next
        tracking pass or start-up reconciliation.
        """
        attempts = [sent]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        last_signed = loop.time()
        while True:
            hashes = [a.tx_hash for a in attempts]
            now = loop.time()
            wait_s = min(deadline - now, self.mempool_check_s)
            if stuck_after_s is not None:
                wait_s = min(wait_s, last_signed + stuck_after_s - now)
            receipt = await self.wait_for_receipt(hashes, max(wait_s, 0.0))
            if receipt is not None:
                await self.record_outcome(receipt, hashes)
                winner = next(a for a in attempts if a.tx_hash == receipt.tx_hash)
                return receipt, winner
            if loop.time() >= deadline:
                raise TemporaryError(f"no receipt for {sent.tx_hash} after {timeout_s} s")
            await self._rebroadcast_if_evicted(attempts)
            stuck = stuck_after_s is not None and loop.time() - last_signed >= stuck_after_s
            if not stuck or len(attempts) > max_replacements:
                continue
            try:
                attempts.append(await self.replace(attempts[-1]))
                last_signed = loop.time()
            except (FeeCapExceeded, BroadcastRejected, SimulationRevert, SigningRefused) as exc:
                # not replaced (too expensive, would revert now, or refused by the guard): the
                # transaction already sent stays the one that may mine
                log.warning("could not replace %s: %s", attempts[-1].tx_hash, exc)
                max_replacements = len(attempts) - 1

    async def node_knows(self, tx_hash: str) -> bool:
        """Whether the read node has ``tx_hash`` (in its pool or mined)."""
        response = await self.read_w3.provider.make_request(
            RPCEndpoint("eth_getTransactionByHash"), [tx_hash]
        )
        return response.get("result") is not None

    async def _rebroadcast_if_evicted(self, attempts: Sequence[SentTx]) -> None:
        """Nodes evict transactions (restarts, full pools, low fees): when none of a nonce's
        attempts is known any more and the nonce is still free, send the newest one again, so
        the nonce never becomes a gap that strands every later transaction."""
        for attempt in attempts:
            if await self.node_knows(attempt.tx_hash):
                return
        mined_nonce = await self.read_w3.eth.get_transaction_count(
            AsyncWeb3.to_checksum_address(self.address), "latest"
        )
        if mined_nonce > attempts[-1].nonce:
            return  # mined (the receipt shows up on the next poll) or taken by another sender
        newest = attempts[-1]
        if await self.past_deadline(newest.request):
            log.warning("%s left the mempool after its deadline; not rebroadcast", newest.tx_hash)
            return
        if self.private_submit:
            # the read node never sees a private RPC's pool: sending again is how we make sure
            # it still holds the transaction ("already known" if it does)
            log.info("%s (nonce %d) sent again to the private RPC", newest.tx_hash, newest.nonce)
        else:
            log.warning(
                "%s (nonce %d) left the mempool; rebroadcasting", newest.tx_hash, newest.nonce
            )
        try:
            await self.broadcast(newest.raw_tx)
        except BroadcastRejected as exc:
            log.warning("rebroadcast of %s refused: %s", newest.tx_hash, exc.reason)
            return
        await self._step(STEP_REBROADCAST)


def _rpc_error(method: str, message: str) -> AgentError:
    lowered = message.lower()
    if method == "eth_sendRawTransaction":
        if "nonce too low" in lowered or "nonce has already been used" in lowered:
            return NonceTooLow(message)
        return BroadcastRejected(message)
    return TemporaryError(f"{method} failed: {message}")
