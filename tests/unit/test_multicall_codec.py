"""Multicall3 ``aggregate3`` encoded and decoded by hand (fixed layout, for speed): the same
bytes as eth_abi's generic coder, and a truncated answer is refused rather than misread."""

from __future__ import annotations

import random

import pytest
from eth_abi import decode, encode

from agent.chain.abi import selector
from agent.chain.multicall import Call, decode_aggregate3_result, encode_aggregate3


def random_calls(rng: random.Random, count: int) -> list[Call]:
    return [
        Call("0x" + rng.randbytes(20).hex(), rng.randbytes(rng.choice([0, 4, 36, 68, 100, 333])))
        for _ in range(count)
    ]


@pytest.mark.parametrize("count", [0, 1, 7, 120])
def test_encoding_matches_eth_abi(count: int) -> None:
    calls = random_calls(random.Random(count), count)
    expected = selector("aggregate3((address,bool,bytes)[])") + encode(
        ["(address,bool,bytes)[]"], [[(c.target, True, c.calldata) for c in calls]]
    )
    assert encode_aggregate3(calls) == expected


@pytest.mark.parametrize("count", [0, 1, 7, 120])
def test_decoding_matches_eth_abi(count: int) -> None:
    rng = random.Random(count)
    answers = [
        (rng.random() < 0.8, rng.randbytes(rng.choice([0, 32, 64, 65, 320]))) for _ in range(count)
    ]
    raw = encode(["(bool,bytes)[]"], [answers])
    assert decode_aggregate3_result(raw) == list(decode(["(bool,bytes)[]"], raw)[0]) == answers


def test_a_truncated_answer_is_refused() -> None:
    raw = encode(["(bool,bytes)[]"], [[(True, b"\x01" * 64), (False, b"")]])
    for cut in (0, 40, len(raw) - 1):
        with pytest.raises(ValueError):
            decode_aggregate3_result(raw[:cut])
