"""Exit codes and option types shared by the command modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EXIT_OK = 0
EXIT_RUNTIME_FAILURE = 1
EXIT_BAD_USAGE_OR_CONFIG = 2

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The agent's agent.toml.")]
EnvOption = Annotated[
    Path | None, typer.Option(help="The .env file (default: .env beside the config).")
]
