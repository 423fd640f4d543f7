"""Build abis/ from contracts/*.sol and from the pinned Uniswap npm artifacts.

Two kinds of files are written to abis/:

* Our contracts: every ``contracts/<Name>.sol`` must define ``contract <Name>``; it is compiled
  with the pinned solc-js from ``anvil/node_modules/solc`` (0.8.28, run through node with the
  standard-JSON interface) and written to ``abis/<Name>.json`` with the keys ``contractName``,
  ``abi``, ``bytecode`` (0x creation code), ``deployedBytecode`` (0x runtime code), ``compiler``,
  ``settings`` and ``sourceHash`` (sha256 of the source file's bytes).
* Interface ABIs the agent calls (``contractName`` and ``abi`` only), copied from the Uniswap
  build artifacts in ``anvil/node_modules/@uniswap``. The devnet deploys the Uniswap bytecode
  straight from those artifacts, so only the ABI is needed here. Constructors are dropped: the
  agent never deploys these from abis/.

Compiler settings: optimizer on with 200 runs, ``evmVersion`` "cancun". Anvil 1.7 runs Prague by
default and supports every fork since Cancun (PUSH0, MCOPY, transient storage), and mainnet has
been on Cancun since March 2024, so the bytecode runs on the devnet, on forks and on mainnet.

Usage::

    python scripts/compile_contracts.py          # rebuild abis/
    python scripts/compile_contracts.py --check  # exit 1 listing stale files, write nothing

Output is deterministic: sorted keys, 2-space indent, trailing newline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = ROOT / "contracts"
ABIS_DIR = ROOT / "abis"
ANVIL_DIR = ROOT / "anvil"
NODE_MODULES = ANVIL_DIR / "node_modules"
UNISWAP_DIR = NODE_MODULES / "@uniswap"

SOLC_SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
}

# abis/<name>.json -> npm artifact it is copied from (relative to anvil/node_modules/@uniswap).
INTERFACE_ARTIFACTS: dict[str, str] = {
    "ERC20": "v2-core/build/IERC20.json",
    "UniswapV2Pair": "v2-core/build/UniswapV2Pair.json",
    "UniswapV2Factory": "v2-core/build/UniswapV2Factory.json",
    "UniswapV2Router02": "v2-periphery/build/UniswapV2Router02.json",
    "WETH9": "v2-periphery/build/WETH9.json",
    "UniswapV3Pool": "v3-core/artifacts/contracts/UniswapV3Pool.sol/UniswapV3Pool.json",
    "UniswapV3Factory": "v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json",
    "QuoterV2": "v3-periphery/artifacts/contracts/lens/QuoterV2.sol/QuoterV2.json",
    "SwapRouter": "v3-periphery/artifacts/contracts/SwapRouter.sol/SwapRouter.json",
}

# Runs solc-js's standard-JSON interface: input JSON on stdin, output JSON on stdout.
_SOLC_COMPILE_JS = """
const solc = require('solc');
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const output = solc.compile(input);
  process.stdout.write(JSON.stringify({version: solc.version(), output: JSON.parse(output)}));
});
"""

_SOLC_VERSION_JS = "process.stdout.write(require('solc').version())"


class CompileError(RuntimeError):
    """solc reported errors, or node/solc could not be run."""


@dataclass(frozen=True)
class Artifact:
    """One abis/<name>.json file: its path and the exact text it should contain."""

    path: Path
    text: str


def render_json(document: dict[str, Any]) -> str:
    """Deterministic JSON text: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def source_hash(path: Path) -> str:
    """sha256 hex digest of a source file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compiler_label(solc_version: str) -> str:
    """The ``compiler`` field written into artifacts, e.g. 'solc-js 0.8.28+commit...'."""
    return f"solc-js {solc_version}"


def _run_node(script: str, stdin_text: str = "") -> str:
    env = dict(os.environ, NODE_PATH=str(NODE_MODULES))
    try:
        completed = subprocess.run(
            ["node", "-e", script],
            input=stdin_text,
            capture_output=True,
            text=True,
            cwd=ANVIL_DIR,
            env=env,
            check=False,
        )
    except FileNotFoundError as exc:
        raise CompileError("node is not installed; it is needed to run solc-js") from exc
    if completed.returncode != 0:
        raise CompileError(
            "solc-js failed (is anvil/node_modules installed? run `make setup`):\n"
            + completed.stderr.strip()
        )
    return completed.stdout


def solc_version() -> str:
    """Full version string of the pinned solc-js, e.g. '0.8.28+commit.7893614a.Emscripten.clang'."""
    return _run_node(_SOLC_VERSION_JS).strip()


def contract_sources() -> list[Path]:
    """Every contracts/*.sol, sorted by name."""
    return sorted(CONTRACTS_DIR.glob("*.sol"))


def _source_key(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# What a pre-Shanghai devnet (``Devnet(hardfork="berlin")``, the legacy-gas devnet) deploys,
# built again for London into abis/london/: no PUSH0, which Berlin/London nodes reject.
# (Multicall3's getBasefee is London's BASEFEE: on Berlin only that getter fails. The
# ArbExecutor needs Cancun's transient storage: a legacy devnet offers no arbitrage.)
PRE_SHANGHAI_DIR = ABIS_DIR / "london"
PRE_SHANGHAI_CONTRACTS = ("Multicall3", "TestERC20", "BalanceProbe")
PRE_SHANGHAI_SETTINGS: dict[str, Any] = {**SOLC_SETTINGS, "evmVersion": "london"}


def compile_sources(
    sources: list[Path], settings: dict[str, Any] = SOLC_SETTINGS
) -> tuple[str, dict[str, Any]]:
    """Compile all sources in one solc run; returns (solc version, standard-JSON output)."""
    standard_input = {
        "language": "Solidity",
        "sources": {
            _source_key(path): {"content": path.read_text(encoding="utf-8")} for path in sources
        },
        "settings": {
            **settings,
            "outputSelection": {
                "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
            },
        },
    }
    result = json.loads(_run_node(_SOLC_COMPILE_JS, json.dumps(standard_input)))
    output: dict[str, Any] = result["output"]
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", e["message"]) for e in errors))
    for warning in output.get("errors", []):
        print(warning.get("formattedMessage", warning["message"]).rstrip(), file=sys.stderr)
    return str(result["version"]), output


def contract_artifacts(
    names: tuple[str, ...] | None = None,
    settings: dict[str, Any] = SOLC_SETTINGS,
    out_dir: Path = ABIS_DIR,
) -> list[Artifact]:
    """Compile contracts/*.sol (or only ``names``) and render <out_dir>/<Name>.json for each."""
    sources = [p for p in contract_sources() if names is None or p.stem in names]
    if not sources:
        return []
    version, output = compile_sources(sources, settings)
    artifacts: list[Artifact] = []
    for path in sources:
        name = path.stem
        compiled = output["contracts"].get(_source_key(path), {}).get(name)
        if compiled is None:
            raise CompileError(f"{_source_key(path)} must define a contract named {name}")
        document = {
            "contractName": name,
            "abi": compiled["abi"],
            "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
            "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
            "compiler": compiler_label(version),
            "settings": settings,
            "sourceHash": source_hash(path),
        }
        artifacts.append(Artifact(out_dir / f"{name}.json", render_json(document)))
    return artifacts


def interface_artifacts() -> list[Artifact]:
    """ABI-only abis/<Name>.json for the ERC20 and Uniswap interfaces the agent calls."""
    artifacts: list[Artifact] = []
    for name, relative in sorted(INTERFACE_ARTIFACTS.items()):
        npm_artifact = UNISWAP_DIR / relative
        if not npm_artifact.is_file():
            raise CompileError(f"missing {npm_artifact}; run `make setup` to install anvil/")
        abi = json.loads(npm_artifact.read_text(encoding="utf-8"))["abi"]
        abi = [entry for entry in abi if entry.get("type") != "constructor"]
        document = {"contractName": name, "abi": abi}
        artifacts.append(Artifact(ABIS_DIR / f"{name}.json", render_json(document)))
    return artifacts


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def stale_files() -> list[str]:
    """Human-readable reasons, one per abis/ file that does not match the sources.

    Our contracts are judged by sourceHash, compiler version and settings (no recompilation, so
    the check is fast); interface ABIs are regenerated and compared byte for byte; files in abis/
    that no source produces are reported as orphans.
    """
    problems: list[str] = []
    sources = contract_sources()
    version = compiler_label(solc_version()) if sources else ""
    expected_names: set[str] = set()
    for path in sources:
        target = ABIS_DIR / f"{path.stem}.json"
        expected_names.add(target.name)
        existing = _read_json(target)
        if existing is None:
            problems.append(f"{target.relative_to(ROOT)}: missing or unreadable")
            continue
        if existing.get("sourceHash") != source_hash(path):
            problems.append(f"{target.relative_to(ROOT)}: {_source_key(path)} changed")
        if existing.get("compiler") != version:
            problems.append(
                f"{target.relative_to(ROOT)}: built by {existing.get('compiler')!r}, "
                f"pinned compiler is {version!r}"
            )
        if existing.get("settings") != SOLC_SETTINGS:
            problems.append(f"{target.relative_to(ROOT)}: compiler settings differ")
    for artifact in interface_artifacts():
        expected_names.add(artifact.path.name)
        try:
            current = artifact.path.read_text(encoding="utf-8")
        except OSError:
            current = None
        if current != artifact.text:
            problems.append(f"{artifact.path.relative_to(ROOT)}: differs from the npm artifact")
    for orphan in sorted(ABIS_DIR.glob("*.json")):
        if orphan.name not in expected_names:
            problems.append(f"{orphan.relative_to(ROOT)}: no source produces it")
    return problems


def write_all() -> list[Path]:
    """Regenerate every abis/ file; returns the paths whose content changed."""
    ABIS_DIR.mkdir(exist_ok=True)
    PRE_SHANGHAI_DIR.mkdir(exist_ok=True)
    changed: list[Path] = []
    pre_shanghai = contract_artifacts(
        PRE_SHANGHAI_CONTRACTS, PRE_SHANGHAI_SETTINGS, PRE_SHANGHAI_DIR
    )
    for artifact in [*contract_artifacts(), *pre_shanghai, *interface_artifacts()]:
        if not artifact.path.is_file() or artifact.path.read_text("utf-8") != artifact.text:
            artifact.path.write_text(artifact.text, encoding="utf-8")
            changed.append(artifact.path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if abis/ is stale; write nothing"
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = stale_files()
            if problems:
                print("abis/ is stale; run `python scripts/compile_contracts.py`:", file=sys.stderr)
                for problem in problems:
                    print(f"  {problem}", file=sys.stderr)
                return 1
            print("abis/ is up to date")
            return 0
        changed = write_all()
    except CompileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"wrote {path.relative_to(ROOT)}")
    if not changed:
        print("abis/ already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
