"""The L1 data fee an OP-stack transaction pays on top of its L2 gas (Fjord rules).

Every transaction on Base or Optimism pays ``gasUsed * effectiveGasPrice`` for L2 execution
plus an L1 fee for posting its bytes to Ethereum; for small swaps the L1 part is often the
larger one. Since Fjord the GasPriceOracle predeploy (``0x4200...000F``) prices it as::

    fastlz  = FastLZ-compressed length of the unsigned RLP transaction + 68 (the signature)
    size    = max(100e6, -42_585_600 + 836_500 * fastlz)           # Brotli-size estimate * 1e6
    l1_fee  = size * (baseFeeScalar * 16 * l1BaseFee + blobBaseFeeScalar * blobBaseFee) / 1e12

Prediction asks the oracle itself (``getL1Fee(unsignedTx)`` by ``eth_call``, one cheap call
per opportunity) so the figure carries the oracle's own rounding; :func:`fjord_l1_fee` is the
same formula locally (tests hold the two equal). Realised cost is the receipt's ``l1Fee`` where
the node reports it (op-geth, op-reth) and otherwise the oracle at the receipt's block for the
mined transaction's unsigned bytes (an Anvil replica).

Since Isthmus an OP-stack chain may also charge an operator fee, booked with L2 execution:
``getOperatorFee(gasUsed)`` on the oracle predicts it where ``isIsthmus()`` holds (Isthmus:
``gasUsed * scalar / 1e6 + constant``; Jovian: ``gasUsed * scalar * 100 + constant``); the
realised fee comes from the receipt's ``operatorFeeScalar`` / ``operatorFeeConstant`` (the
formula of the fork active at its block), or the oracle at the receipt's block.

Arbitrum charges the L1 part in L2 gas, inside ``gasUsed`` (receipts say how much:
``gasUsedForL1``; its wei are ``gasUsedForL1 * effectiveGasPrice``). Prediction asks the
NodeInterface (``0x...C8``, a virtual contract only a Nitro node answers):
``gasEstimateL1Component(to, false, data)`` returns ``gasEstimateForL1`` (L2 gas) and the L2
``baseFee``; the L1 part is their product, in wei. It is the L1 half of
``gasEstimateComponents`` (same Nitro code: Brotli size of the transaction x 16 units x
ArbOS's L1 price per unit, padded by 256 units, 1% and 10%), without running the caller's gas
estimate, so it needs no sender, prices a swap before its approval and works in paper mode.
A node whose receipts lack ``gasUsedForL1`` (an Anvil replica) is priced the same way at the
receipt's block, added on top of ``gasUsed`` (such a node did not charge it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import rlp
from eth_abi import decode, encode
from eth_utils import keccak, to_bytes
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError

from agent.chain.registry import ARBITRUM_NODE_INTERFACE, OP_GAS_PRICE_ORACLE, chain_profile

FJORD_COST_INTERCEPT = -42_585_600
FJORD_COST_FASTLZ_COEF = 836_500
FJORD_MIN_TRANSACTION_SIZE = 100
FJORD_DECIMALS = 6
# The unsigned transaction lacks its signature (v, r, s): the oracle counts 68 bytes for it.
SIGNATURE_ALLOWANCE = 68


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


GET_L1_FEE = _selector("getL1Fee(bytes)")
GET_L1_FEE_UPPER_BOUND = _selector("getL1FeeUpperBound(uint256)")
L1_BASE_FEE = _selector("l1BaseFee()")
BLOB_BASE_FEE = _selector("blobBaseFee()")
BASE_FEE_SCALAR = _selector("baseFeeScalar()")
BLOB_BASE_FEE_SCALAR = _selector("blobBaseFeeScalar()")
IS_JOVIAN = _selector("isJovian()")
GET_OPERATOR_FEE = _selector("getOperatorFee(uint256)")
GAS_ESTIMATE_L1_COMPONENT = _selector("gasEstimateL1Component(address,bool,bytes)")
# Unsigned type-2 envelope around the calldata (chain id, nonce, fees, gas, to, value, lists):
# what getL1FeeUpperBound adds to the calldata of a transaction not built yet.
TX_ENVELOPE_BYTES = 64


@dataclass(frozen=True, slots=True)
class ExtraFees:
    """What a chain charges a transaction beyond ``gas x price``, wei: the L1 data fee and,
    on OP-stack chains since Isthmus, the operator fee (booked with L2 execution)."""

    l1_fee_wei: int = 0
    operator_fee_wei: int = 0


@dataclass(frozen=True, slots=True)
class OperatorFeeParams:
    """An OP-stack chain's operator fee inputs: scalar (Isthmus: 1e6 = 1 wei per gas; Jovian:
    1 = 100 wei per gas), constant (wei per transaction), and whether Jovian's formula holds."""

    scalar: int = 0
    constant_wei: int = 0
    jovian: bool = False


def operator_fee(gas_used: int, params: OperatorFeeParams) -> int:
    """The operator fee (wei) of a transaction that used ``gas_used`` L2 gas."""
    if params.jovian:
        return gas_used * params.scalar * 100 + params.constant_wei
    return gas_used * params.scalar // 10**6 + params.constant_wei


@dataclass(frozen=True, slots=True)
class OpL1FeeParams:
    """The oracle's inputs at one block: L1 base/blob fees (wei) and their scalars (1e6 = 1)."""

    l1_base_fee_wei: int
    blob_base_fee_wei: int
    base_fee_scalar: int
    blob_base_fee_scalar: int


def fastlz_compressed_length(data: bytes) -> int:
    """Length of ``data`` after FastLZ level-1 compression (what Solady's ``flzCompress``
    returns and op-geth's ``FlzCompressLen`` counts), without building the output."""
    table = [0] * 8192
    size = len(data)

    def u24(i: int) -> int:
        return data[i] | (data[i + 1] << 8) | (data[i + 2] << 16)

    def hash24(value: int) -> int:
        return ((2654435769 * value) >> 19) & 0x1FFF

    def literals(run: int) -> int:
        return 0x21 * (run // 0x20) + (run % 0x20 + 1 if run % 0x20 else 0)

    def match_cost(length: int) -> int:
        length -= 1
        return 3 * (length // 262) + (3 if length % 262 >= 6 else 2)

    def match_length(p: int, q: int, end: int) -> int:
        length = 0
        while length < end - q:
            differs = data[p + length] != data[q + length]
            length += 1  # FastLZ counts the byte that ends the match
            if differs:
                break
        return length

    n = 0
    anchor = 0
    ip = 2
    ip_limit = size - 13 if size >= 13 else 0
    while ip < ip_limit:
        while True:
            seq = u24(ip)
            h = hash24(seq)
            ref = table[h]
            table[h] = ip
            distance = ip - ref
            if ip >= ip_limit:
                break
            ip += 1
            if distance <= 0x1FFF and seq == u24(ref):
                break
        if ip >= ip_limit:
            break
        ip -= 1
        if ip > anchor:
            n += literals(ip - anchor)
        length = match_length(ref + 3, ip + 3, ip_limit + 9)
        n += match_cost(length)
        ip += length
        table[hash24(u24(ip))] = ip
        ip += 1
        table[hash24(u24(ip))] = ip
        ip += 1
        anchor = ip
    return n + literals(size - anchor)


def _fjord_cost(fastlz_size: int, params: OpL1FeeParams) -> int:
    estimated = max(
        FJORD_COST_INTERCEPT + FJORD_COST_FASTLZ_COEF * fastlz_size,
        FJORD_MIN_TRANSACTION_SIZE * 10**6,
    )
    fee_scaled = (
        params.base_fee_scalar * 16 * params.l1_base_fee_wei
        + params.blob_base_fee_scalar * params.blob_base_fee_wei
    )
    return int(estimated * fee_scaled // 10 ** (FJORD_DECIMALS * 2))


def fjord_l1_fee(unsigned_tx: bytes, params: OpL1FeeParams) -> int:
    """The L1 fee (wei) ``getL1Fee(unsigned_tx)`` returns under ``params`` (Fjord)."""
    return _fjord_cost(fastlz_compressed_length(unsigned_tx) + SIGNATURE_ALLOWANCE, params)


def fjord_l1_fee_upper_bound(unsigned_tx_size: int, params: OpL1FeeParams) -> int:
    """``getL1FeeUpperBound(size)``: Fjord's bound on FastLZ's output for any such payload."""
    tx_size = unsigned_tx_size + SIGNATURE_ALLOWANCE
    return _fjord_cost(tx_size + tx_size // 255 + 16, params)


def _int(value: Any) -> int:
    if isinstance(value, str):
        return int(value, 16) if value.startswith("0x") else int(value)
    return int(value or 0)


def unsigned_tx_bytes(tx: Mapping[str, Any]) -> bytes:
    """The unsigned serialization OP's oracle expects, from transaction fields as we sign them
    or as ``eth_getTransactionByHash`` returns them (type 2, or legacy type 0)."""
    to = tx.get("to")
    to_raw = to_bytes(hexstr=str(to)) if to else b""
    data = tx.get("data", tx.get("input", b""))
    data_raw = to_bytes(hexstr=data) if isinstance(data, str) else bytes(data)
    tx_type = _int(tx.get("type", 0))
    if tx_type == 2:
        access_list = [
            [
                to_bytes(hexstr=str(item["address"])),
                [to_bytes(hexstr=str(k)) for k in item["storageKeys"]],
            ]
            for item in tx.get("accessList") or []
        ]
        fields = [
            _int(tx["chainId"]),
            _int(tx["nonce"]),
            _int(tx["maxPriorityFeePerGas"]),
            _int(tx["maxFeePerGas"]),
            _int(tx["gas"]),
            to_raw,
            _int(tx.get("value", 0)),
            data_raw,
            access_list,
        ]
        return b"\x02" + bytes(rlp.encode(fields))
    fields = [
        _int(tx["nonce"]),
        _int(tx["gasPrice"]),
        _int(tx["gas"]),
        to_raw,
        _int(tx.get("value", 0)),
        data_raw,
    ]
    return bytes(rlp.encode(fields))


BlockRef = int | Literal["latest", "pending"]


class OpStackL1Fees:
    """Asks the GasPriceOracle predeploy for L1 and operator fees (prediction) and settles
    them (receipts)."""

    # Prices the exact unsigned transaction when it can be built (``predict``'s ``unsigned``).
    needs_unsigned = True

    def __init__(self, w3: AsyncWeb3[Any], oracle: str = OP_GAS_PRICE_ORACLE) -> None:
        self._w3 = w3
        self.oracle = AsyncWeb3.to_checksum_address(oracle)

    async def _call(self, data: bytes, block: BlockRef = "latest") -> int:
        raw = await self._w3.eth.call({"to": self.oracle, "data": data}, block)
        (value,) = decode(["uint256"], bytes(raw))
        return int(value)

    async def l1_fee(self, unsigned_tx: bytes, block: BlockRef = "latest") -> int:
        """``getL1Fee(unsigned_tx)`` at ``block``, wei."""
        return await self._call(GET_L1_FEE + encode(["bytes"], [unsigned_tx]), block)

    async def l1_fee_upper_bound(self, unsigned_tx_size: int, block: BlockRef = "latest") -> int:
        """``getL1FeeUpperBound(size)`` at ``block``, wei."""
        return await self._call(
            GET_L1_FEE_UPPER_BOUND + encode(["uint256"], [unsigned_tx_size]), block
        )

    async def _flag(self, selector: bytes, block: BlockRef) -> bool:
        """A fork flag of the oracle; an oracle from before that fork has no such getter."""
        try:
            return bool(await self._call(selector, block))
        except (ContractLogicError, ValueError):
            return False

    async def operator_fee(self, gas_used: int, block: BlockRef = "latest") -> int:
        """``getOperatorFee(gas_used)`` at ``block``: 0 unless ``isIsthmus()`` (the oracle
        itself says 0 then; an oracle older than Isthmus has no such function)."""
        try:
            return await self._call(GET_OPERATOR_FEE + encode(["uint256"], [gas_used]), block)
        except (ContractLogicError, ValueError):
            return 0

    async def predict(
        self, to: str, data: bytes, gas_units: int, unsigned: bytes | None = None
    ) -> ExtraFees:
        """Fees beyond ``gas x price`` of a transaction to ``to`` with ``data`` using
        ``gas_units`` L2 gas: the L1 fee of its ``unsigned`` serialization when known, else
        the oracle's upper bound for the calldata plus the envelope; the operator fee."""
        if unsigned is not None:
            l1 = await self.l1_fee(unsigned)
        else:
            l1 = await self.l1_fee_upper_bound(len(data) + TX_ENVELOPE_BYTES)
        return ExtraFees(l1, await self.operator_fee(gas_units))

    async def realised_operator_fee(
        self, gas_used: int, block: int, reported: tuple[int, int] | None
    ) -> int:
        """The operator fee a mined transaction paid: from the receipt's ``(scalar,
        constant)`` under the fork active at ``block``, else the oracle at ``block``."""
        if reported is None:
            return await self.operator_fee(gas_used, block)
        scalar, constant = reported
        jovian = scalar != 0 and await self._flag(IS_JOVIAN, block)
        return operator_fee(gas_used, OperatorFeeParams(scalar, constant, jovian))

    async def params(self, block: BlockRef = "latest") -> OpL1FeeParams:
        """The oracle's fee inputs at ``block`` (for :func:`fjord_l1_fee` without a call)."""
        return OpL1FeeParams(
            l1_base_fee_wei=await self._call(L1_BASE_FEE, block),
            blob_base_fee_wei=await self._call(BLOB_BASE_FEE, block),
            base_fee_scalar=await self._call(BASE_FEE_SCALAR, block),
            blob_base_fee_scalar=await self._call(BLOB_BASE_FEE_SCALAR, block),
        )

    async def realised_l1_fee(self, raw_receipt: Mapping[str, Any]) -> int:
        """The L1 fee a mined transaction paid: the receipt's ``l1Fee`` when the node gives
        it, else the oracle at the receipt's block for the transaction's unsigned bytes."""
        reported = raw_receipt.get("l1Fee")
        if reported is not None:
            return _int(reported)
        tx = await self._w3.eth.get_transaction(raw_receipt["transactionHash"])
        return await self.l1_fee(unsigned_tx_bytes(tx), _int(raw_receipt["blockNumber"]))


@dataclass(frozen=True, slots=True)
class ArbitrumL1Estimate:
    """``gasEstimateL1Component``'s answer: L2 gas for the L1 part, the L2 base fee (wei)
    and ArbOS's L1 price per calldata unit (wei)."""

    gas_for_l1: int
    base_fee_wei: int
    l1_base_fee_estimate_wei: int

    @property
    def fee_wei(self) -> int:
        """The L1 part in wei: ``gasEstimateForL1 x baseFee``."""
        return self.gas_for_l1 * self.base_fee_wei


class ArbitrumL1Fees:
    """Asks Arbitrum's NodeInterface for the L1 part of a transaction (prediction) and
    settles it from receipts (``gasUsedForL1``, or the NodeInterface at the receipt's block)."""

    needs_unsigned = False

    def __init__(self, w3: AsyncWeb3[Any], node_interface: str = ARBITRUM_NODE_INTERFACE) -> None:
        self._w3 = w3
        self.node_interface = AsyncWeb3.to_checksum_address(node_interface)

    async def estimate(
        self, to: str | None, data: bytes, block: BlockRef = "latest"
    ) -> ArbitrumL1Estimate:
        """``gasEstimateL1Component(to, to is None, data)`` at ``block``."""
        target = AsyncWeb3.to_checksum_address(to) if to else "0x" + "00" * 20
        call = GAS_ESTIMATE_L1_COMPONENT + encode(
            ["address", "bool", "bytes"], [target, to is None, data]
        )
        raw = await self._w3.eth.call({"to": self.node_interface, "data": call}, block)
        gas, base_fee, l1_price = decode(["uint64", "uint256", "uint256"], bytes(raw))
        return ArbitrumL1Estimate(int(gas), int(base_fee), int(l1_price))

    async def predict(
        self, to: str, data: bytes, gas_units: int, unsigned: bytes | None = None
    ) -> ExtraFees:
        """The L1 part (wei) of a transaction to ``to`` with ``data``; Arbitrum has no
        operator fee."""
        return ExtraFees((await self.estimate(to, data)).fee_wei)

    async def realised_l1_fee(self, raw_receipt: Mapping[str, Any]) -> int:
        """The L1 part a mined transaction paid: ``gasUsedForL1 x effectiveGasPrice`` when the
        node gives it, else the NodeInterface's figure for its calldata at its block."""
        reported = raw_receipt.get("gasUsedForL1")
        if reported is not None:
            return _int(reported) * _int(raw_receipt.get("effectiveGasPrice"))
        tx = await self._w3.eth.get_transaction(raw_receipt["transactionHash"])
        to = tx.get("to")
        data = tx.get("input", b"")
        data_raw = to_bytes(hexstr=data) if isinstance(data, str) else bytes(data)
        block = _int(raw_receipt["blockNumber"])
        return (await self.estimate(str(to) if to else None, data_raw, block)).fee_wei

    async def realised_operator_fee(
        self, gas_used: int, block: int, reported: tuple[int, int] | None
    ) -> int:
        return 0


ChainFees = OpStackL1Fees | ArbitrumL1Fees


def chain_fees_for(w3: AsyncWeb3[Any], chain: str) -> ChainFees | None:
    """The fee oracle of ``chain``'s L1 fee model (None: the chain charges gas x price only)."""
    model = chain_profile(chain).l1_fee
    if model.oracle is None:
        return None
    if model.kind == "op_stack":
        return OpStackL1Fees(w3, model.oracle)
    if model.kind == "arbitrum":
        return ArbitrumL1Fees(w3, model.oracle)
    return None


def receipt_fee_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The L2 fee fields of a raw receipt, as :class:`agent.chain.tx.Receipt` keeps them:
    ``l1_fee_wei`` (OP's ``l1Fee``; Arbitrum's ``gasUsedForL1 x effectiveGasPrice``),
    ``l1_gas_used`` (Arbitrum's ``gasUsedForL1``, inside ``gasUsed``) and
    ``operator_fee_reported`` (OP's ``(operatorFeeScalar, operatorFeeConstant)``)."""
    fields: dict[str, Any] = {}
    if raw.get("l1Fee") is not None:
        fields["l1_fee_wei"] = _int(raw["l1Fee"])
    if raw.get("gasUsedForL1") is not None:
        fields["l1_gas_used"] = _int(raw["gasUsedForL1"])
        fields["l1_fee_wei"] = fields["l1_gas_used"] * _int(raw.get("effectiveGasPrice"))
    if raw.get("operatorFeeScalar") is not None:
        fields["operator_fee_reported"] = (
            _int(raw["operatorFeeScalar"]),
            _int(raw.get("operatorFeeConstant")),
        )
    return fields
