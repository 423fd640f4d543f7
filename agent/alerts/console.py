"""Console channel: each event as a rich panel (colour by severity) on an injected Console."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agent.alerts.base import AlertCard, AlertEvent, Severity

SEVERITY_STYLE = {
    Severity.INFO: "green",
    Severity.WARNING: "yellow",
    Severity.ERROR: "dark_orange",
    Severity.CRITICAL: "bold red",
}


def card_panel(card: AlertCard) -> Panel:
    """A panel with the title, summary and a two-column field table; text is never markup."""
    style = SEVERITY_STYLE.get(card.severity, "white")
    parts: list[Text | Table] = []
    if card.summary:
        parts.append(Text(card.summary))
    if card.fields:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="dim")
        table.add_column()
        for name, value in card.fields:
            table.add_row(Text(name), Text(value))
        parts.append(table)
    when = datetime.fromtimestamp(card.at).strftime("%H:%M:%S")
    return Panel(
        Group(*parts) if parts else Text(""),
        title=Text(card.title, style=style),
        subtitle=Text(f"{card.severity.label} · {when}", style="dim"),
        border_style=style,
        expand=False,
    )


class ConsoleNotifier:
    """Prints events; ``console`` is injected (tests pass ``Console(file=StringIO())``)."""

    def __init__(self, console: Console, *, name: str = "console") -> None:
        self._console = console
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def send(self, event: AlertEvent) -> None:
        self._console.print(card_panel(event.render_card()))

    async def aclose(self) -> None:
        """Nothing to release: the console belongs to the caller."""
