"""What the command line prints: its two consoles, user text made safe to show, one-line errors.

In: text (file names, SQL, messages) and exit codes. Out: lines on stdout or stderr; `fail` prints
`error: <one line>` and exits with the code given.
"""

from __future__ import annotations

import typer
from rich.console import Console

err = Console(stderr=True)
out = Console()


def shown(text: object) -> str:
    """User-controlled text (file names, SQL, DuckDB's messages) as the terminal must show it:
    rich markup escaped, control characters written as escapes."""
    from rich.markup import escape

    return escape("\n".join(shown_value(line) for line in str(text).split("\n")))


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {shown(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def shown_value(v: object) -> str:
    """A value as a table cell: control characters written as escapes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(v))


def counted(n: int, word: str) -> str:
    """`1 post`, `2 posts`: a count with its noun."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def one_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else "no message"
