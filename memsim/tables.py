"""The CLI's tables, readable at any terminal width (80 columns included).

A column is of one kind: NAME (a model, device or case name, or a short label: never wrapped,
never cut), NUM (a figure: right-aligned, never wrapped) or TEXT (wraps at spaces, folds a long
word). Where the table would not fit the console, the columns of `drop` go first, in that order,
then others from the right (never the first), and a line under the table names them. Every cell is plain text (rich.text.Text), so that
brackets in a name or a message are printed, not read as markup.
"""

from __future__ import annotations

import textwrap

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

NAME, NUM, TEXT = "name", "num", "text"
TEXT_FLOOR = 12  # the narrowest a TEXT column of long words is let go before columns are dropped


def show(console: Console, title: str, columns: list[tuple[str, str, str]], rows: list[dict[str, str]],
         drop: tuple[str, ...] = (), more: str = "a wider terminal shows them", caption: str = "") -> None:
    """Print `rows` (dicts by column key) under `columns` ((key, header, kind) each) at the console's width."""
    cols = list(columns)
    left_out = []
    for key in (*drop, *[k for k, _, _ in reversed(columns[1:]) if k not in drop]):
        if _min_width(cols, rows) <= console.width:
            break
        cols = [c for c in cols if c[0] != key]
        left_out += [h.replace("\n", " ") for k, h, _ in columns if k == key]
    t = Table(title=Text(title), caption=Text(caption) if caption else None)
    for key, header, kind in cols:
        t.add_column(Text(header), justify="right" if kind == NUM else "left", no_wrap=kind != TEXT,
                     overflow="fold", min_width=_width(key, header, rows) if kind != TEXT else None)
    for r in rows:
        t.add_row(*(Text(r.get(key, "")) for key, _, _ in cols))
    console.print(t)
    if left_out:
        console.print(Text(f"left out at {console.width} columns: {', '.join(left_out)}; {more}"))


def _width(key: str, header: str, rows: list[dict[str, str]]) -> int:
    """The widest line of a column's header and cells."""
    lines = header.splitlines() + [line for r in rows for line in str(r.get(key, "")).splitlines()]
    return max((cell_len(line) for line in lines), default=0)


def _min_width(cols, rows) -> int:
    """The narrowest the table prints with every NAME and NUM cell whole: their widths, TEXT's
    longest word (up to TEXT_FLOOR: a longer one folds), one space of padding either side of each
    cell, and the box's vertical lines."""
    widths = [min(_longest_word(k, h, rows), TEXT_FLOOR) if kind == TEXT else _width(k, h, rows) for k, h, kind in cols]
    return sum(widths) + 2 * len(cols) + len(cols) + 1


def _longest_word(key: str, header: str, rows: list[dict[str, str]]) -> int:
    words = header.split() + [w for r in rows for w in str(r.get(key, "")).split()]
    return max((cell_len(w) for w in words), default=0)


def cell(v) -> str:
    """A catalog figure for a table: figures from a million up with an SI prefix (1.1T, 410G),
    a list as its items joined by '+' (as --method spells one), the rest as they are."""
    if v is None:
        return "-"
    if isinstance(v, (list, tuple)):
        return "+".join(cell(x) for x in v)
    if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) >= 1e6:
        for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
            if abs(v) >= scale:
                return f"{v / scale:.3g}{prefix}"
    return str(v)


_UNITS = (("_bytes_per_s", " B/s"), ("_macs_per_s", " MAC/s"), ("_flops", " FLOP/s"), ("_bytes", " B"),
          ("_per_s", "/s"), ("_hz", " Hz"), ("_s", " s"))


def header(key: str, values: list[str]) -> str:
    """A catalog field's column header: its unit as a symbol (dram_bandwidth_bytes_per_s: 'dram
    bandwidth B/s'), over as many lines as the column's figures are wide."""
    if key == "display_name":
        return "description"
    for suffix, unit in _UNITS:
        if key.endswith(suffix):
            key = key[: -len(suffix)] + unit
            break
    text = key.replace("_", " ")
    wide = max([cell_len(v) for v in values] + [cell_len(w) for w in text.split()])
    return "\n".join(textwrap.wrap(text, wide, break_long_words=False)) or text
