"""The HTML checks shared by the report tests: tag balance, every tag, every URL-valued attribute."""

from __future__ import annotations

from html.parser import HTMLParser

VOID = {"br", "meta", "hr", "img", "input", "link", "col", "wbr", "area", "base", "source"}
URL_ATTRIBUTES = ("src", "href", "xlink:href", "action", "srcset")


class BalancedHTML(HTMLParser):
    """Records tag-balance errors, the tags seen and every URL attribute; subclasses collect more in
    :meth:`opened` (after a start tag) and :meth:`closed` (after a balanced end tag)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: set[str] = set()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        self.urls += [v or "" for k, v in attrs.items() if k in URL_ATTRIBUTES]
        if tag not in VOID:
            self.stack.append(tag)
        self.opened(tag, attrs)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()
        self.closed(tag)

    def opened(self, tag: str, attrs: dict) -> None:
        """Hook: a start tag was read."""

    def closed(self, tag: str) -> None:
        """Hook: a balanced end tag was read."""
