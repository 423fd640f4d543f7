"""Persistent risk controls: the kill-switch flag file and the drawdown halt file beside it.

They are read only in ``RiskGate.refresh_controls()`` (the engine calls it once per tick) and
written only by the gate's ``pause`` and ``kill``, ``resume``, ``halt_trading`` and ``observe``:

* the kill-switch file (``risk.kill_switch_file``): present = paused; its text is the reason;
* the halt file beside it (``<kill switch name>.halted``, JSON): a drawdown halt. It survives
  restarts; only ``resume`` (``defi-agent resume``, Telegram /resume) removes it.

``agent.risk.gate`` re-exports ``ControlFiles``, ``HaltRecord`` and ``ControlState``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_MAX_REASON_CHARS = 500


@dataclass(frozen=True, slots=True)
class HaltRecord:
    """A persisted halt. ``at`` is unix seconds; USD and percent as the gate saw them."""

    reason: str
    detail: str
    at: float
    equity_usd: float = 0.0
    peak_equity_usd: float = 0.0
    drawdown_pct: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {
                "reason": self.reason,
                "detail": self.detail,
                "at": self.at,
                "at_iso": datetime.fromtimestamp(self.at, tz=UTC).isoformat(),
                "equity_usd": self.equity_usd,
                "peak_equity_usd": self.peak_equity_usd,
                "drawdown_pct": self.drawdown_pct,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> HaltRecord:
        """Parse a halt file; an unreadable one still halts (fail closed)."""
        try:
            raw = json.loads(text)
            return cls(
                reason=str(raw["reason"]),
                detail=str(raw.get("detail", "")),
                at=float(raw.get("at", 0.0)),
                equity_usd=float(raw.get("equity_usd", 0.0)),
                peak_equity_usd=float(raw.get("peak_equity_usd", 0.0)),
                drawdown_pct=float(raw.get("drawdown_pct", 0.0)),
            )
        except (ValueError, KeyError, TypeError):
            return cls(reason="unknown", detail="halt file present but unreadable", at=0.0)


@dataclass(frozen=True, slots=True)
class ControlFiles:
    """The kill-switch flag file and the halt file beside it. All file I/O of the gate is here.

    Writes are atomic (temp file + fsync + rename) so a crash never leaves a half-written
    control; a missing parent directory is created.
    """

    kill_switch_file: Path
    halt_file: Path

    @classmethod
    def beside(cls, kill_switch_file: Path) -> ControlFiles:
        """Controls for ``kill_switch_file``; the halt file is ``<name>.halted`` next to it."""
        return cls(
            kill_switch_file=kill_switch_file,
            halt_file=kill_switch_file.with_name(kill_switch_file.name + ".halted"),
        )

    def read_pause(self) -> str | None:
        """The pause reason when the kill switch is on, else None."""
        try:
            text = self.kill_switch_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None
        return text.strip()[:_MAX_REASON_CHARS] or "kill switch file present"

    def write_pause(self, reason: str) -> None:
        _atomic_write(self.kill_switch_file, reason.strip()[:_MAX_REASON_CHARS] + "\n")

    def read_halt(self) -> HaltRecord | None:
        try:
            text = self.halt_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None
        return HaltRecord.from_json(text)

    def write_halt(self, record: HaltRecord) -> None:
        _atomic_write(self.halt_file, record.to_json() + "\n")

    def clear(self) -> tuple[bool, bool]:
        """Remove both files. Returns (was paused, was halted)."""
        return _remove(self.kill_switch_file), _remove(self.halt_file)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class ControlState:
    """The gate's controls after ``refresh_controls``. ``resumed`` is True when a halt or a
    pause was lifted from outside this process (``defi-agent resume``) during this refresh."""

    paused: bool
    pause_reason: str | None
    halt: HaltRecord | None
    resumed: bool = False

    def describe(self) -> str:
        """One line for ``status``, Telegram /status and logs."""
        parts = []
        if self.halt is not None:
            parts.append(f"HALTED ({self.halt.reason}): {self.halt.detail}")
        if self.pause_reason is not None:
            parts.append(f"PAUSED: {self.pause_reason}")
        return "; ".join(parts) or "trading"
