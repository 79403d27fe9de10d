"""A strict reading of a report page with the standard library's HTML parser: tags must nest, and the
page's links, images and tables are collected."""

from __future__ import annotations

from html.parser import HTMLParser

VOID = {"meta", "img", "br", "hr", "link", "input", "source", "col", "area", "base", "wbr"}


class PageParser(HTMLParser):
    """Collects ``img`` sources, ``a`` targets and every ``table`` (by class) as rows of (tag, text, colspan)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.tables: dict[str, list[list[tuple[str, str, int]]]] = {}
        self._table: list[list[tuple[str, str, int]]] | None = None
        self._cell: list | None = None
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "img":
            self.images.append(a["src"] or "")
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")
        elif tag == "table":
            self._table = self.tables.setdefault(a.get("class") or f"table{len(self.tables)}", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = [tag, "", int(a.get("colspan") or 1)]

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append((self._cell[0], self._cell[1].strip(), self._cell[2]))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[1] += data


def parse_page(text: str) -> PageParser:
    parser = PageParser()
    parser.feed(text)
    parser.close()
    assert parser.doctype, "no <!DOCTYPE html>"
    assert not parser.stack, f"unclosed tags: {parser.stack}"
    return parser


def expand(rows: list[tuple[str, str, int]]) -> list[str]:
    """A header row's texts with each ``colspan`` repeated."""
    return [text for _, text, span in rows for _ in range(span)]
