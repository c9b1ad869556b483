"""The top of a report page: its title, which peerdistill wrote it and when, and its contents
(a link to each section)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime

from .. import __version__
from ..engine.environment import source_commit
from ..environment_words import code_in_words
from .html_parts import esc

_SECTION_START = re.compile(r'<section id="([^"]*)">\n<h2>(.*?)</h2>')


def page_top(title: str, sections: list[str], now: datetime | None = None) -> list[str]:
    """``sections`` with the page's title, the line saying who wrote it and when, and the contents
    in front; a section whose title another took before it gets an id of its own (``-2``)."""
    taken: Counter[str] = Counter()

    def own_id(found: re.Match) -> str:
        ident = found[1]
        taken[ident] += 1
        return found[0] if taken[ident] == 1 else found[0].replace(f'id="{ident}"', f'id="{ident}-{taken[ident]}"', 1)

    sections = [_SECTION_START.sub(own_id, part) for part in sections]
    return [f"<h1>{esc(title)}</h1>", written_by_html(now), contents_html(sections), *sections]


def written_by_html(now: datetime | None = None) -> str:
    """``Written by peerdistill 0.1.0 (git commit abc123) on 2026-03-01 14:03 UTC.``: the code that
    drew the page (its commit where it runs from a clone) and when, in the machine's time zone."""
    when = (now or datetime.now()).astimezone().strftime("%Y-%m-%d %H:%M %Z")
    code = code_in_words({"peerdistill": __version__, "source": source_commit()})
    return f'<p class="written-by">Written by {esc(code)} on {esc(when)}.</p>'


def contents_html(sections: list[str]) -> str:
    """A link to each section of ``sections`` (their ids and titles as ``section_html`` wrote them)."""
    found = _SECTION_START.findall("\n".join(sections))
    if not found:
        return ""
    links = "\n".join(f'<li><a href="#{ident}">{title}</a></li>' for ident, title in found)
    return f'<nav class="contents"><b>Contents</b>\n<ul>\n{links}\n</ul>\n</nav>'
