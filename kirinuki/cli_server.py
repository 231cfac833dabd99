"""Command line: `kirinuki server start|stop|status` — a Prefect server kept running for later runs.

In: nothing but the environment (KIRINUKI_STATE_DIR, PREFECT_HOME). Out: a background Prefect server on
127.0.0.1 (see kirinuki/server.py) and one line about it. While it runs, every `kirinuki build`,
`release` and `verify` records its run there without paying a server's start-up.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console

server_app = typer.Typer(no_args_is_help=True, add_completion=False,
                         help="A Prefect server in the background, so runs skip a server's start-up.")
out = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    raise typer.Exit(code)


def _yours() -> str:
    url = os.environ.get("PREFECT_API_URL", "")
    return f" (PREFECT_API_URL is set, so runs use {url} instead)" if url else ""


@server_app.command()
def start(port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (another free one if taken; 0: any).", min=0,
                                            max=65535)] = 4200) -> None:
    """Start the background server (or report the one running); `kirinuki server stop` ends it."""
    from kirinuki.server import ServerError, home, start_background

    try:
        server, started = start_background(port)
    except ServerError as e:
        _fail(str(e))
    verb = "started" if started else "already running:"
    out.print(f"{verb} Prefect server {server.url} (UI and API; pid {server.pid}, log {home() / 'server.log'}); "
              f"stop it with: kirinuki server stop{_yours()}", highlight=False, soft_wrap=True)


@server_app.command()
def stop() -> None:
    """Stop the background server and everything it started."""
    from kirinuki.server import stop_background

    server = stop_background()
    out.print(f"stopped the Prefect server at {server.url}" if server else "no kirinuki server is running",
              highlight=False)


@server_app.command()
def status() -> None:
    """Say whether the background server runs, and which server runs will use (exit 1 if none runs)."""
    from kirinuki.server import background

    server = background()
    if server is None:
        out.print("no kirinuki server is running: each run starts a Prefect server of its own (5–15 s); "
                  f"start one with: kirinuki server start{_yours()}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    out.print(f"running: Prefect server {server.url} (pid {server.pid}){_yours()}", highlight=False, soft_wrap=True)
