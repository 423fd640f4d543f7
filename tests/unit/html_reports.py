"""Reading the self-contained HTML reports as a browser would: elements by id, markers per
series, table rows, and every reference to something outside the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

VOID = {"meta", "br", "img", "input", "link", "hr", "wbr", "source", "col", "area", "base"}


@dataclass
class ReportPage:
    ids: set[str] = field(default_factory=set)
    markers: dict[str, int] = field(default_factory=dict)  # <g id> -> <use> markers inside it
    paths: dict[str, int] = field(default_factory=dict)  # <g id> -> <path> elements inside it
    table_rows: dict[str, list[list[str]]] = field(default_factory=dict)  # table id -> rows
    external: list[str] = field(default_factory=list)  # src/href outside the document
    tags: set[str] = field(default_factory=set)
    text: str = ""


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = ReportPage()
        self.open: list[tuple[str, str | None]] = []  # (tag, id) of open elements
        self.table: str | None = None
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.chunks: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.page.tags.add(tag)
        element_id = values.get("id")
        if element_id:
            self.page.ids.add(element_id)
        for name in ("src", "href", "xlink:href", "action", "data"):
            target = values.get(name)
            if target is not None and not target.startswith("#"):
                self.page.external.append(f"{tag} {name}={target}")
        groups = [i for t, i in self.open if t == "g" and i]
        if tag in ("use", "path"):
            counts = self.page.markers if tag == "use" else self.page.paths
            for group in groups:
                counts[group] = counts.get(group, 0) + 1
        if tag == "table" and element_id:
            self.table = element_id
            self.page.table_rows[element_id] = []
        elif tag == "tr" and self.table:
            self.row = []
        elif tag == "td" and self.row is not None:
            self.cell = []
        if tag not in VOID:
            self.open.append((tag, element_id))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.open.pop()

    def handle_endtag(self, tag: str) -> None:
        while self.open:
            closed, _ = self.open.pop()
            if closed == tag:
                break
        if tag == "td" and self.cell is not None and self.row is not None:
            self.row.append("".join(self.cell).strip())
            self.cell = None
        elif tag == "tr" and self.row is not None and self.table:
            if self.row:
                self.page.table_rows[self.table].append(self.row)
            self.row = None
        elif tag == "table":
            self.table = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)
        if not any(t in ("svg", "style") for t, _ in self.open):
            self.chunks.append(data)


def read_report(path: Path) -> ReportPage:
    reader = _Reader()
    reader.feed(path.read_text(encoding="utf-8"))
    reader.close()
    reader.page.text = " ".join(" ".join(reader.chunks).split())
    return reader.page


def assert_self_contained(page: ReportPage) -> None:
    """Nothing is fetched: no script, stylesheet link, image or frame, no outside reference."""
    assert page.external == []
    assert not page.tags & {"script", "link", "img", "iframe", "object", "embed"}
