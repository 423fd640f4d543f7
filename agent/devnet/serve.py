"""Foreground devnet for operators (``defi-agent devnet up``) and the first-run swap showcase."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agent.devnet import DEFAULT_DEPLOYMENTS_DIR, Devnet
from agent.devnet.traders import SwapResult, quote_v2, swap_v2, swap_v3


def pid_file(name: str, deployments_dir: Path = DEFAULT_DEPLOYMENTS_DIR) -> Path:
    return deployments_dir / f"{name}.pid"


def _print_devnet(console: Console, devnet: Devnet) -> None:
    console.print(f"[bold green]devnet '{devnet.name}' is up[/]")
    console.print(f"RPC URL: {devnet.rpc_url}")
    console.print(f"WS URL:  {devnet.ws_url}")
    console.print(f"chain id: {devnet.chain_id}")
    table = Table("name", "address", title="addresses")
    for name, address in devnet.addresses.items():
        table.add_row(name, address)
    console.print(table)
    v2 = sum(1 for p in devnet.pools if p.kind == "v2")
    console.print(f"pools: {v2} V2, {len(devnet.pools) - v2} V3")
    if devnet.deployments_dir is not None:
        console.print(f"deployment: {devnet.deployments_dir / (devnet.name + '.json')}")


async def serve_devnet(
    *, name: str = "devnet", extra_tokens: int = 0, console: Console | None = None
) -> None:
    """Run a devnet until SIGINT or SIGTERM (or ``defi-agent devnet down``), then stop Anvil."""
    console = console or Console()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Devnet(name=name, extra_tokens=extra_tokens) as devnet:
            _print_devnet(console, devnet)
            pid_path = pid_file(name)
            pid_path.write_text(str(os.getpid()))
            console.print("Press Ctrl-C to stop.", style="dim")
            try:
                await stop.wait()
            finally:
                pid_path.unlink(missing_ok=True)
        console.print("devnet stopped")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def stop_devnet(name: str = "devnet") -> bool:
    """Ask a running ``devnet up`` to stop; False when none is running."""
    path = pid_file(name)
    if not path.is_file():
        return False
    try:
        os.kill(int(path.read_text().strip()), signal.SIGTERM)
    except (ProcessLookupError, ValueError):
        path.unlink(missing_ok=True)
        return False
    return True


async def demo_swaps(console: Console | None = None) -> list[SwapResult]:
    """Bring up a devnet, swap once on each DEX, show what happened (the first-run demo)."""
    console = console or Console()
    async with Devnet(deployments_dir=None) as devnet:
        _print_devnet(console, devnet)
        assert devnet.rpc is not None
        a, trader = devnet.addresses, devnet.accounts[1][0]
        path = [a["WETH"], a["USDC"]]
        results = []
        for dex in ("uniswap_v2", "sushiswap"):
            quoted = await quote_v2(devnet.rpc, a[f"{dex}.router"], path, 10**18)
            result = await swap_v2(
                devnet.rpc,
                dex=dex,
                router=a[f"{dex}.router"],
                trader=trader,
                path=path,
                amount_in=10**18,
            )
            if result.amount_out != quoted:
                raise AssertionError(f"{dex}: got {result.amount_out}, router quoted {quoted}")
            results.append(result)
        results.append(
            await swap_v3(
                devnet.rpc,
                swap_router=a["uniswap_v3.swap_router"],
                trader=trader,
                token_in=a["USDC"],
                token_out=a["WETH"],
                fee_pips=500,
                amount_in=3_000 * 10**6,
            )
        )
        symbols = {t.address: t for t in devnet.tokens.values()}
        table = Table("dex", "sold", "bought", "block", "tx", title="one swap on each DEX")
        for r in results:
            t_in, t_out = symbols[r.token_in], symbols[r.token_out]
            table.add_row(
                r.dex,
                f"{r.amount_in / 10**t_in.decimals:,.4f} {t_in.symbol}",
                f"{r.amount_out / 10**t_out.decimals:,.6f} {t_out.symbol}",
                str(r.block),
                r.tx_hash[:18] + "…",
            )
        console.print(table)
        return results
