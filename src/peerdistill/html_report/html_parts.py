"""The HTML building blocks of a report page: escaping, the page, its sections, notes,
tables and matplotlib figures embedded as base64 PNG (a page is a single file)."""

from __future__ import annotations

import base64
import html
import io
import re
from typing import Any


import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from ..report import NOT_AVAILABLE, NOT_AVAILABLE_MEANS

# marks a page as this command's, the only kind --out replaces
GENERATOR = '<meta name="generator" content="peerdistill report">'
PNG_DATA_URI = "data:image/png;base64,"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .8em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; }
td { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: #f2f2f2; }
tbody th { text-align: left; font-weight: normal; }
figure { margin: .8em 0; } figure img { max-width: 100%; }
figcaption, .note, .table-note { color: #555; font-size: .9em; }
.note { background: #fff8e0; border-left: 4px solid #e0b000; padding: .4em .8em; }
code { background: #f4f4f4; padding: 0 .2em; }
.written-by { color: #555; font-size: .9em; }
nav.contents ul { columns: 2; margin: .4em 0; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def page_html(title: str, sections: list[str]) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n{GENERATOR}\n'
            f"<title>{esc(title)}</title>\n"
            f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(sections) + "\n</body>\n</html>\n")


def section_html(title: str, parts: list[str]) -> str:
    """A section whose id, ``anchor(title)``, the page's contents link to."""
    return f'<section id="{anchor(title)}">\n<h2>{esc(title)}</h2>\n' + "\n".join(parts) + "\n</section>"


def anchor(title: str) -> str:
    """A section's id from its title: ``test accuracy`` -> ``test-accuracy``."""
    return re.sub(r"[^a-z0-9_]+", "-", title.lower()).strip("-") or "section"


def note_html(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def table_html(header: list[str], rows: list[list[str]]) -> str:
    """A table whose first column names the row; cells are plain text (escaped here)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "\n".join(
        f"<tr><th>{esc(row[0])}</th>" + "".join(f"<td>{esc(cell)}</td>" for cell in row[1:]) + "</tr>"
        for row in rows
    )
    table = f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"
    if any(str(cell).startswith(NOT_AVAILABLE) for row in rows for cell in row[1:]):
        table += f'\n<p class="table-note">{esc(NOT_AVAILABLE_MEANS)}</p>'
    return table


def figure_html(fig, caption: str) -> str:
    """The figure as an embedded PNG; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (f'<figure><img src="{PNG_DATA_URI}{data}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def legend_name(name: str) -> str:
    """A label matplotlib keeps in the legend: it leaves out those starting with '_' (a model or
    config named '_fast'), so such a name gets an invisible zero-width space in front."""
    return "\u200b" + name if name.startswith("_") else name


def as_number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def per_epoch_axes(fig, ax, ylabel: str, title: str):
    """The finish every per-epoch figure shares: whole epochs, a light grid, the legend outside."""
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


# The line figures' colours, Okabe and Ito's (as the mask pictures' palette), told apart with
# colour-vision deficiencies (review 55t: matplotlib's orange and green, student1 and student2,
# were one colour to a protanope); yellow last, faint on white.
LINE_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
