"""Configuration: pydantic models of agent.toml (``models``), and loading it (``loading``:
``${VAR}`` and ``.env`` expansion, validation errors by field path, redacted dumps)."""
