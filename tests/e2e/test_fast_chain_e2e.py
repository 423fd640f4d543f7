"""A fast chain: Anvil mines a block every 250 ms while the real `defi-agent run` follows it for
30 s of chain (120 blocks) over websocket, its reads going through a provider 100 ms away, so a
tick takes longer than a block. The agent always works on the newest head: its lag in blocks
stays bounded instead of growing, the heads it had no time for are counted as skipped (the
journal's ticks jump over them; none is worked through late), and each snapshot carries its
block's own timestamp (the chain's clock runs an hour ahead of ours, so our clock would show).

Nothing is timed: waits are bounded polls, samples are split by their order, and the lag in
seconds is checked against the block's header and our clock read around the same scrape."""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
import socket
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from agent.devnet import Devnet
from agent.store.db import init_db, session_factory
from agent.store.journal import Journal
from tests.e2e.harness import Process, start_agent_run, tree_for, write_config
from tests.fakes.rpc_proxy import FaultyRpcProxy

BLOCK_TIME_S = 0.25
CHAIN_BLOCKS = 120  # 30 s of this chain
CHAIN_AHEAD_S = 3_600  # the chain's clock runs this far ahead of ours
PROVIDER_LATENCY_S = 0.1
# Bounds with room for a loaded machine (a tick here takes one or two blocks), far below what
# an agent consuming heads in order builds in 30 s (its lag grows by blocks every second, to
# dozens, while its own head, the one it got round to, shows none of it).
MAX_LAG_BLOCKS = 20
MAX_LAG_GROWTH_BLOCKS = 4
MAX_UNSEEN_BLOCKS = 8  # chain head minus the agent's head, at a scrape
_SAMPLE = re.compile(r"^(defi_agent_[a-z_]+) (\S+)$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Sample:
    """One scrape of /metrics, with our clock read just before and just after it, and the
    chain's head asked of Anvil itself right after."""

    chain_head: int
    head: int
    lag_blocks: int
    lag_s: float
    skipped: int
    ticks: int
    before: float
    after: float

    @property
    def tick_block(self) -> int:
        """The block of the agent's latest tick at this scrape."""
        return self.head - self.lag_blocks

    @property
    def lag(self) -> int:
        """How far the agent's latest tick is behind the chain, by the chain's own head."""
        return self.chain_head - self.tick_block


async def scrape(http: aiohttp.ClientSession, url: str, chain: Devnet) -> Sample | None:
    before = time.time()
    async with http.get(url) as response:
        text = await response.text()
    after = time.time()
    values = {name: float(value) for name, value in _SAMPLE.findall(text)}
    if not values.get("defi_agent_ticks_total"):
        return None  # not ticked yet
    return Sample(
        chain_head=int(await chain.call("eth_blockNumber"), 16),
        head=int(values["defi_agent_head_block"]),
        lag_blocks=int(values["defi_agent_head_lag_blocks"]),
        lag_s=values["defi_agent_head_lag_seconds"],
        skipped=int(values["defi_agent_heads_skipped_total"]),
        ticks=int(values["defi_agent_ticks_total"]),
        before=before,
        after=after,
    )


@pytest.mark.slow
@pytest.mark.chain
async def test_250ms_blocks_for_30s_newest_head_bounded_lag_block_timestamps(
    devnet: Devnet, tmp_path: Path, agent_processes: list[Process]
) -> None:
    assert devnet.state_file is not None  # the session devnet, deployed and saved
    port = free_port()
    async with (
        Devnet(
            state_file=devnet.state_file,
            deployments_dir=tmp_path / "deployments",
            block_time_s=BLOCK_TIME_S,
        ) as fast,
        FaultyRpcProxy(fast.rpc_url, failure_rate=0.0, latency_s=PROVIDER_LATENCY_S) as provider,
        aiohttp.ClientSession() as http,
    ):
        await fast.call("evm_increaseTime", [CHAIN_AHEAD_S])
        tree = tree_for(
            rpc_url=provider.url,
            deployment_file=tmp_path / "deployments" / "devnet.json",
            workdir=tmp_path,
            arb_executor="",
            tokens=[s for s in fast.tokens if not s.startswith("ALT")],
        )
        del tree["execution"]["arb_executor"]  # paper mode: nothing is signed
        tree["execution"]["mode"] = "paper"
        tree["chain"].update({"ws_url": fast.ws_url, "block_time_s": BLOCK_TIME_S})
        tree["engine"]["block_source"] = "ws"
        tree["metrics"] = {"enabled": True, "port": port}
        config_path = tmp_path / "agent.toml"
        cfg = write_config(config_path, tree, {})
        log_path = tmp_path / "agent.log"
        with log_path.open("wb") as log_file:
            proc = await start_agent_run(config_path, {}, stdout=log_file)
            agent_processes.append(proc)
            metrics_url = f"http://127.0.0.1:{port}/metrics"

            def alive() -> None:
                assert proc.returncode is None, log_path.read_text()[-3000:]

            samples: list[Sample] = []
            async with asyncio.timeout(120):  # a bound on waiting, never a timing assertion
                while not samples or samples[-1].chain_head < samples[0].chain_head + CHAIN_BLOCKS:
                    alive()
                    try:
                        sample = await scrape(http, metrics_url, fast)
                    except aiohttp.ClientConnectionError:
                        sample = None  # still starting
                    if sample is not None:
                        samples.append(sample)
                        if len(samples) % 8 == 1:  # the snapshot's time is its block's
                            header = await fast.call(
                                "eth_getBlockByNumber", [hex(sample.tick_block), False]
                            )
                            block_ts = int(header["timestamp"], 16)
                            assert sample.before - block_ts <= sample.lag_s
                            assert sample.lag_s <= sample.after - block_ts
                            assert sample.lag_s < -CHAIN_AHEAD_S / 2  # not our clock
                    await asyncio.sleep(0.25)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 60) == 0, log_path.read_text()[-3000:]

    # The lag in blocks does not grow: bounded throughout, no higher at the end than at the
    # start (medians of the first and the last third of the scrapes); and the agent's own
    # figure shows it (its head is the chain's, not the one it last got round to).
    lags = [s.lag for s in samples]
    assert all(0 <= s.lag - s.lag_blocks <= MAX_UNSEEN_BLOCKS for s in samples), [
        (s.lag, s.lag_blocks) for s in samples
    ]
    third = len(lags) // 3
    assert third >= 10, f"too few scrapes: {len(lags)}"
    assert max(lags) <= MAX_LAG_BLOCKS, lags
    assert (
        statistics.median(lags[-third:]) <= statistics.median(lags[:third]) + MAX_LAG_GROWTH_BLOCKS
    ), lags

    # Heads were skipped, not queued: the journal's ticks jump over heads, and the heads they
    # jumped over are exactly the ones counted as skipped.
    last = samples[-1]
    assert last.skipped > 0
    db = await init_db(cfg.store.url)
    try:
        ticked = [
            s.block_number
            for s in await Journal(session_factory(db)).equity_history()
            if s.block_number is not None
        ]
    finally:
        await db.dispose()
    assert ticked == sorted(set(ticked))  # every tick on a newer block than the one before
    counted = [b for b in ticked if b <= last.tick_block]
    assert counted[-1] == last.tick_block and len(counted) == last.ticks
    assert sum(b - a - 1 for a, b in itertools.pairwise(counted)) == last.skipped
