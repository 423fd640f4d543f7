"""Which provider answers are a refused log range (ask for less) and which are a rate limit
(back off), and how a refused range is cut."""

from __future__ import annotations

import pytest

from agent.chain.limits import ProviderLimits, log_range_refusal
from agent.chain.logs import plan_log_ranges, split_refused

INFURA_RESULTS = {
    "code": -32005,
    "message": "query returned more than 10000 results. Try with this block range "
    "[0x11B2E60, 0x11B3A31].",
}
INFURA_RATE = {"code": -32005, "message": "daily request count exceeded, request rate limited"}
ALCHEMY_SIZE = {
    "code": -32602,
    "message": "Log response size exceeded. You can make eth_getLogs requests with up to a 2K "
    "block range and no limit on the response size, or you can request any block range with a "
    "cap of 10K logs in the response. Based on your parameters, this block range should work: "
    "[0x1, 0x3e7]",
}
ALCHEMY_RANGE = {
    "code": -32602,
    "message": "Under the Free tier plan, you can make eth_getLogs requests with up to a 10 "
    "block range.",
}
QUICKNODE_RANGE = {"code": -32614, "message": "eth_getLogs is limited to a 10,000 range"}
BAD_PARAMS = {"code": -32602, "message": "invalid argument 0: hex string without 0x prefix"}


def test_refusals_are_recognised_with_the_suggested_range() -> None:
    infura = log_range_refusal(INFURA_RESULTS)
    assert infura is not None and infura.suggested == (0x11B2E60, 0x11B3A31)
    alchemy = log_range_refusal(ALCHEMY_SIZE)
    assert alchemy is not None and alchemy.suggested == (1, 999)
    for error in (ALCHEMY_RANGE, QUICKNODE_RANGE):
        refusal = log_range_refusal(error)
        assert refusal is not None and refusal.suggested is None


def test_rate_limits_and_bad_requests_are_not_refusals() -> None:
    assert log_range_refusal(INFURA_RATE) is None
    assert log_range_refusal(BAD_PARAMS) is None
    assert log_range_refusal("block range too large") is None  # not an error object


def test_ranges_are_planned_within_the_cap_and_split_where_the_provider_says() -> None:
    limits = ProviderLimits(logs_max_block_range=10)
    assert plan_log_ranges(101, 125, limits) == [(101, 110), (111, 120), (121, 125)]
    assert plan_log_ranges(7, 7, limits) == [(7, 7)]
    assert split_refused((1, 2000), (1, 999)) == [(1, 999), (1000, 2000)]
    assert split_refused((1, 2000), None) == [(1, 1000), (1001, 2000)]
    # a suggestion outside the piece is ignored: halves
    assert split_refused((10, 20), (0, 5)) == [(10, 15), (16, 20)]
    with pytest.raises(ValueError):
        split_refused((5, 5), None)


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        ProviderLimits(logs_max_block_range=0)
    with pytest.raises(ValueError):
        ProviderLimits(requests_per_s=-1)
