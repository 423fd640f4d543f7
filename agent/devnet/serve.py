"""Foreground devnet for operators (``defi-agent devnet up``) and the first-run swap showcase."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agent.devnet import DEFAULT_DEPLOYMENTS_DIR, Devnet


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
    _print_funded_accounts(console, devnet)
    if devnet.deployments_dir is not None:
        console.print(f"deployment: {devnet.deployments_dir / (devnet.name + '.json')}")
    else:  # a replica: the agent finds everything through the registry, as on the real chain
        console.print(
            f'agent.toml: [chain] name = "{devnet.name}", chain_id = {devnet.chain_id}, '
            f'rpc_urls = ["{devnet.rpc_url}"], and no deployment_file'
        )


def _print_funded_accounts(console: Console, devnet: Devnet) -> None:
    """Anvil's public test accounts (their keys are in Anvil's own docs: test use only)."""
    from agent.devnet.node import DEV_ACCOUNTS

    replica = devnet.deployments_dir is None
    table = Table("#", "address", "holds", title="funded accounts (Anvil's public test keys)")
    for index, (address, _key) in enumerate(DEV_ACCOUNTS):
        if index == 0:
            holds = "10,000 ETH; provides the pools' liquidity"
        else:
            holds = "10,000 ETH" + (" and 2M USD of every token" if replica else "")
        table.add_row(str(index), address, holds)
    console.print(table)
    url = f" --rpc-url {devnet.rpc_url}" if replica else ""
    console.print(f"fund your own wallet: defi-agent devnet fund ADDRESS{url}", soft_wrap=True)


async def serve_devnet(
    *,
    name: str = "devnet",
    extra_tokens: int = 0,
    replica: str | None = None,
    console: Console | None = None,
) -> None:
    """Run a devnet (or, with ``replica``, a replica of that real chain) until SIGINT or SIGTERM
    (or ``defi-agent devnet down``), then stop Anvil."""
    console = console or Console()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if replica is not None:
            from agent.devnet.replica import Replica

            node: Devnet = Replica(replica)
            name = replica
        else:
            node = Devnet(name=name, extra_tokens=extra_tokens)
        async with node as devnet:
            _print_devnet(console, devnet)
            pid_path = pid_file(name)
            pid_path.parent.mkdir(parents=True, exist_ok=True)
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
