"""The text side of configuration: ``${VAR}`` expansion, ``.env`` reading, error messages that
name each field by its dotted path, redaction of secrets and URLs, and TOML output.

The schema lives in :mod:`agent.config.models`; nothing here knows its sections.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from dotenv import dotenv_values
from pydantic import BaseModel, SecretStr, ValidationError

from agent.chain.registry import DEVNET_CHAIN, default_deployment_path, load_deployment
from agent.errors import ConfigError, FieldProblems
from agent.redaction import redact_url

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# ---------------------------------------------------------------------------------------------
# Field-level problems raised from model validators. Pydantic reports a model validator's error
# at the model's own location; these carry the field (relative to that model) so the message
# can name ``risk.max_trade_usd`` instead of just ``risk``.


def raise_if(problems: list[tuple[str, str]]) -> None:
    """Raise :class:`FieldProblems` from a model validator when ``problems`` is not empty."""
    if problems:
        raise FieldProblems(problems)


# ---------------------------------------------------------------------------------------------
# ${VAR} expansion.

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")


def expand_env_references(
    tree: dict[str, Any],
    env: Mapping[str, str],
    problems: dict[str, str],
    references: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``${VAR}`` / ``${VAR:-default}`` in every string of ``tree`` replaced from ``env``;
    each failure is recorded in ``problems`` under the dotted path of its field. The raw text
    of every expanded string goes into ``references`` under its path: an error about that
    field shows ``${VAR}``, never what the environment (or ``.env``) put there."""
    seen: dict[str, str] = {} if references is None else references
    expanded: dict[str, Any] = _expand_node(tree, (), env, problems, seen)
    return expanded


def _expand_node(
    node: Any,
    path: tuple[str | int, ...],
    env: Mapping[str, str],
    problems: dict[str, str],
    references: dict[str, str],
) -> Any:
    if isinstance(node, dict):
        return {k: _expand_node(v, (*path, k), env, problems, references) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_node(v, (*path, i), env, problems, references) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        references[dotted(path)] = node
        return _expand_string(node, dotted(path), env, problems)
    return node


def _expand_string(text: str, where: str, env: Mapping[str, str], problems: dict[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, has_default, default = match.group(1).partition(":-")
        if not ENV_NAME.fullmatch(name):
            # The body may hold a default value that is a secret: do not echo it.
            problems[where] = "malformed ${...} reference; use ${NAME} or ${NAME:-default}"
            return match.group(0)
        value = env.get(name)
        if value is None or (has_default and value == ""):
            if has_default:
                return default
            problems[where] = (
                f"environment variable {name} is not set "
                f"(set it, add it to .env, or write ${{{name}:-default}})"
            )
            return match.group(0)
        return value

    return _REFERENCE.sub(substitute, text)


def devnet_rpc_urls(
    tree: dict[str, Any], base_dir: Path | None, problems: dict[str, str]
) -> dict[str, Any]:
    """For the devnet without ``rpc_urls``, take the URL from its deployment file: Anvil picks a
    free port on every start and ``defi-agent devnet up`` rewrites the file each time."""
    chain = tree.get("chain", {})
    if not isinstance(chain, dict) or "rpc_urls" in chain:
        return tree
    if chain.get("name", DEVNET_CHAIN) != DEVNET_CHAIN:
        return tree
    declared = chain.get("deployment_file")
    if isinstance(declared, str):
        path = Path(declared).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
    else:
        path = default_deployment_path()
    if not path.is_file():
        problems["chain.rpc_urls"] = (
            f"not set, and the devnet deployment file {path} does not exist yet "
            "(start the devnet with `defi-agent devnet up`, or set rpc_urls)"
        )
        return tree
    try:
        rpc_url = load_deployment(path).rpc_url
    except ConfigError as exc:
        problems["chain.rpc_urls"] = f"not set, and {str(exc).splitlines()[0]}"
        return tree
    if rpc_url is None:
        problems["chain.rpc_urls"] = f"not set, and {path} has no rpc_url"
        return tree
    return {**tree, "chain": {**chain, "rpc_urls": [rpc_url]}}


def read_dotenv(config_path: Path, env_file: Path | str | None) -> dict[str, str]:
    if env_file is None:
        candidate = config_path.resolve().parent / ".env"
        if not candidate.is_file():
            return {}
        env_path = candidate
    else:
        env_path = Path(env_file)
        if not env_path.is_file():
            raise ConfigError(f"env file {env_path} not found")
    # interpolate=False: .env values are taken literally, never expanded from one another.
    values = dotenv_values(env_path, interpolate=False)
    return {k: v for k, v in values.items() if v is not None}


# ---------------------------------------------------------------------------------------------
# Error reporting.


def dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside Optional/Union/Annotated."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        found: list[Any] = []
        for arg in get_args(annotation):
            if arg is not type(None):
                found.extend(_unwrap(arg))
        return found
    return [annotation]


def _annotation_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> Any | None:
    """The declared type at ``loc`` inside ``root``, or None when the path is unknown."""
    candidates: list[Any] = [root]
    for part in loc:
        next_candidates: list[Any] = []
        for candidate in candidates:
            for concrete in _unwrap(candidate):
                origin = get_origin(concrete)
                if isinstance(concrete, type) and issubclass(concrete, BaseModel):
                    field = concrete.model_fields.get(str(part))
                    if field is not None:
                        next_candidates.append(field.annotation)
                elif origin in (list, tuple, set, frozenset) and isinstance(part, int):
                    next_candidates.extend(get_args(concrete)[:1])
                elif origin is dict:
                    next_candidates.extend(get_args(concrete)[1:2])
        if not next_candidates:
            return None
        candidates = next_candidates
    return candidates[0] if candidates else None


def _is_secret(annotation: Any) -> bool:
    if annotation is None:
        return False
    if annotation is SecretStr:
        return True
    return any(_is_secret(arg) for arg in get_args(annotation))


def _model_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    annotation = root if not loc else _annotation_at(root, loc)
    for concrete in _unwrap(annotation):
        if isinstance(concrete, type) and issubclass(concrete, BaseModel):
            return concrete
    return None


def _describe_input(value: object, secret: bool) -> str:
    if secret or isinstance(value, (dict, list, SecretStr)):
        return ""
    if isinstance(value, str):
        shown = redact_url(value) if "://" in value else value
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f" (got {shown!r})"
    if isinstance(value, (bool, int, float, Decimal)):
        return f" (got {value!r})" if not isinstance(value, Decimal) else f" (got {value})"
    return f" (got a {type(value).__name__})"


_MESSAGES: dict[str, str] = {
    "missing": "required, but not set",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "decimal_parsing": "must be a decimal number",
    "decimal_type": "must be a decimal number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "path_type": "must be a file path",
}


def _number(value: object) -> str:
    # Bounds of float fields come back as 100.0; operators wrote 100.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _message_for(error: Mapping[str, Any]) -> str:
    kind = str(error["type"])
    ctx = error.get("ctx") or {}
    bounds = {
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
    }
    if kind in bounds:
        symbol, key = bounds[kind]
        return f"must be {symbol} {_number(ctx.get(key))}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind == "enum":
        return f"must be one of {ctx.get('expected')}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} item(s)"
    if kind == "string_pattern_mismatch":
        return "must be lower-case letters, digits, '-' or '_'"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return _MESSAGES.get(kind, str(error["msg"]))


_GOT = re.compile(r" \(got .*\)$", re.DOTALL)


def _as_written(path: str, message: str, references: Mapping[str, str]) -> str:
    """``message`` about the field at ``path``, showing its value as written in the file
    (``${VAR}``) when it came from the environment or ``.env``: that value may be a secret
    that landed in the wrong field."""
    raw = references.get(path)
    if raw is None:
        return message
    stripped = _GOT.sub("", message)
    return f"{stripped} (got {raw!r})" if "(got " in message else stripped


def describe_validation_errors(
    exc: ValidationError,
    root: type[BaseModel],
    references: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """(dotted field path, what is wrong and what is expected) for every error in ``exc``.

    Values of secret fields, of unknown keys and of whole tables are never echoed; a value
    expanded from ``${VAR}`` (``references``: path -> raw text) is shown as written."""
    written = references or {}
    described: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        ctx = error.get("ctx") or {}
        raised = ctx.get("error")
        if isinstance(raised, FieldProblems):
            for field, message in raised.problems:
                path = dotted((*loc, *field.split(".")))
                described.append((path, _as_written(path, message, written)))
            continue
        kind = error["type"]
        if kind == "extra_forbidden":
            # Never echo the value: a misspelt secret key would leak its secret here.
            parent = _model_at(root, loc[:-1])
            hint = ""
            if parent is not None:
                close = difflib.get_close_matches(str(loc[-1]), list(parent.model_fields), n=1)
                if close:
                    hint = f"; did you mean '{close[0]}'?"
            described.append((dotted(loc), f"unknown key{hint}"))
            continue
        secret = _is_secret(_annotation_at(root, loc))
        message = _message_for(error)
        if kind != "missing" and "(got " not in message:
            message += _describe_input(error.get("input"), secret)
        path = dotted(loc)
        # A value_error's own text may quote the value too: (got ...) is replaced as a whole.
        described.append((path, _as_written(path, message, written)))
    return described


def format_problems(source: str, problems: Mapping[str, str]) -> str:
    count = len(problems)
    header = f"{source}: {count} invalid setting{'s' if count != 1 else ''}:"
    return "\n".join([header, *(f"  {path}: {message}" for path, message in problems.items())])


# ---------------------------------------------------------------------------------------------
# Redaction and TOML output.


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else json.dumps(str(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = (f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + ", ".join(items) + " }"
    return json.dumps(str(value))


def toml_dumps(tree: Mapping[str, Any]) -> str:
    lines: list[str] = []

    def table(prefix: str, node: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, dict) and v is not None}
        tables = {k: v for k, v in node.items() if isinstance(v, dict)}
        if prefix and (scalars or not tables):
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        if prefix and (scalars or not tables):
            lines.append("")
        for key, value in tables.items():
            table(f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key), value)

    table("", tree)
    return "\n".join(lines).rstrip("\n") + "\n"
