"""Command line: `kirinuki COMMAND`. Errors are one line on stderr and a non-zero exit.

In: argv. Out: what each command prints, its exit status. `build` lives in cli_build, `release` and
`verify` in cli_release, `server` in cli_server; query, validate, serve, synth, outlets, entities,
overview and conventions here.
"""

from __future__ import annotations

from kirinuki.allocators import use_lean_allocators

use_lean_allocators()  # before anything allocates (kirinuki.allocators says why)

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Optional  # noqa: E402

import typer  # noqa: E402
from rich.table import Table  # noqa: E402
from rich.text import Text  # noqa: E402

from kirinuki import __version__  # noqa: E402
from kirinuki.cli_build import INTERRUPTED, build  # noqa: E402
from kirinuki.cli_release import release, verify  # noqa: E402
from kirinuki.cli_server import server_app  # noqa: E402
from kirinuki.console import counted, err, fail, out, shown, shown_value  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="kirinuki: Japanese news-clipping posts -> clean, validated Parquet tables.")
app.command()(build)
app.command()(release)
app.command()(verify)
app.add_typer(server_app, name="server")


@app.command()
def serve(
    paths: Annotated[list[str], typer.Argument(help="Post files or folders to build from on every run.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Build folder each run replaces.")] = Path("output/build"),
    name: Annotated[str, typer.Option(help="Deployment name (flow kirinuki-build/<name>).")] = "kirinuki",
    cron: Annotated[Optional[str], typer.Option(help="Schedule as a cron string, e.g. '0 3 * * *'.")] = None,
    interval: Annotated[Optional[int], typer.Option(help="Schedule every N seconds.", min=60)] = None,
) -> None:
    """Serve the build flow as a Prefect deployment (on PREFECT_API_URL, or `kirinuki server start`'s): runs on its schedule and
    whenever triggered from the Prefect UI or `prefect deployment run kirinuki-build/<name>`."""
    if not os.environ.get("PREFECT_API_URL"):
        from kirinuki.server import background

        running = background()
        if running is None:
            fail("kirinuki serve needs a Prefect server that stays up: start one with 'kirinuki server start', "
                 "or set PREFECT_API_URL to yours", 2)
        os.environ["PREFECT_API_URL"] = running.api_url  # before Prefect is imported
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        fail(f"input not found: {missing[0]} (give existing post files or folders)", 2)
    from kirinuki.flows.build import build as build_flow

    params = {"inputs": [str(Path(p).resolve()) for p in paths], "out": str(out_dir.resolve())}
    build_flow.serve(name=name, parameters=params, cron=cron, interval=interval, print_starting_message=False)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="DuckDB SQL; tables are views by name (documents, excerpts, …).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Build folder to query.")] = Path("output/build"),
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    limit: Annotated[int, typer.Option(help="Rows shown in table format.")] = 50,
    timeout: Annotated[float, typer.Option(help="Seconds before the query is stopped (0: no limit).")] = 300,
) -> None:
    """Run read-only SQL over a build's tables (csv and json stream every row; table shows --limit)."""
    from kirinuki.store.query import run_query

    _show(out_dir, lambda con: run_query(con, sql), fmt, limit, timeout)


def _show(out_dir: Path, relation, fmt: str, limit: int, timeout: float = 300) -> None:
    """Print the relation `relation(con)` makes over the build's tables, in `fmt`."""
    from kirinuki.store.query import QueryError, batches, open_build, time_limit

    if fmt not in ("table", "csv", "json"):
        fail(f"unknown --format {fmt!r}: use table, csv or json", 2)
    con = None
    try:
        con = open_build(out_dir)
        rel = relation(con)
        if rel is None:
            return
        cols = rel.columns
        with time_limit(con, timeout):
            if fmt == "table":
                shown_rows = rel.limit(limit + 1).fetchall()
                more = len(shown_rows) > limit
                t = Table()
                for c in cols:
                    t.add_column(Text(shown_value(c)))  # Text: names and values are never read as markup
                for r in shown_rows[:limit]:
                    t.add_row(*(Text("NULL" if v is None else shown_value(v)) for v in r))
                out.print(t)
                if more:
                    out.print("… more rows not shown (use --limit, or --format csv for all)")
            elif fmt == "csv":
                import csv

                w = csv.writer(sys.stdout)
                w.writerow(cols)
                for rows in batches(rel):
                    w.writerows(rows)
            else:
                first = True
                sys.stdout.write("[")
                for rows in batches(rel):
                    for r in rows:
                        sys.stdout.write(("" if first else ",") + json.dumps(dict(zip(cols, r)), ensure_ascii=False,
                                                                              default=str))
                        first = False
                sys.stdout.write("]\n")
    except QueryError as e:
        fail(str(e), 2)
    finally:
        if con is not None:
            con.close()  # before the interpreter exits: DuckDB must not be torn down with a reader open


@app.command()
def validate(
    build_dir: Annotated[Optional[Path], typer.Argument(help="Build folder to check (or --out, as in query).",
                                                        show_default=False)] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Build folder to check (default output/build).",
                                                    show_default=False)] = None,
) -> None:
    """Re-validate an existing build against expectations/ (reads only; exit 1 on any failure)."""
    from kirinuki.store.files import DATA_DIR

    if build_dir and out_dir and build_dir != out_dir:
        fail(f"two build folders given ({build_dir} and --out {out_dir}); give one", 2)
    build_dir = build_dir or out_dir or Path("output/build")

    if not (build_dir / DATA_DIR).is_dir():
        fail(f"{build_dir} is not a kirinuki build (no {DATA_DIR}/ folder)", 2)
    from kirinuki.validate import ValidationFailed, validate_build

    try:
        report = validate_build(build_dir, quarantine=False)
    except ValidationFailed as e:
        fail(f"critical: {e}", 1)
    failed = [c for c in report.checks if not c.success]
    for c in failed:
        err.print(f"[yellow]warning:[/] {shown(c.line())}", highlight=False, soft_wrap=True)
    out.print(f"{len(report.checks)} checks on {len(report.rows)} tables: "
              f"{'all pass' if not failed else f'{len(failed)} failed'}", highlight=False)
    if failed:
        raise typer.Exit(1)


@app.command()
def synth(
    posts: Annotated[int, typer.Option("--posts", help="Posts to generate.", min=1)] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same corpus).")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for post_*.txt and ground_truth.csv.")] = Path("output/synth"),
    excerpts_per_post: Annotated[int, typer.Option(help="Mean excerpts per post.", min=1)] = 7,
    in_order: Annotated[bool, typer.Option("--in-order", help="Date the posts in order, as a blog's: each "
                                           "quotes a new article first, and the dates never cycle.")] = False,
) -> None:
    """Generate a fictional corpus in the clipping grammar, with ground truth for dedup."""
    from kirinuki.synth import write_corpus

    if out_dir.exists() and any(out_dir.glob("post_*.txt")):
        fail(f"{out_dir} already holds a generated corpus; remove it or choose another --out", 2)
    stats = write_corpus(out_dir, posts, seed, excerpts_per_post, in_order)
    out.print(f"{stats['posts']:,} posts, {stats['excerpts']:,} excerpts of {stats['articles']:,} articles, "
              f"{stats['bytes'] / 1e6:,.1f} MB -> {shown(out_dir)} (ground truth: {shown(out_dir / 'ground_truth.csv')})",
              highlight=False)


UNKNOWN_OUTLETS_SQL = """
SELECT outlet_raw, count(*) AS n, min(source) AS seen_in
FROM (SELECT outlet_raw, 'excerpts' AS source FROM excerpts WHERE outlet_id IS NULL AND outlet_raw IS NOT NULL
      UNION ALL SELECT outlet_raw, 'citations' FROM citations WHERE outlet_id IS NULL AND outlet_raw IS NOT NULL
      UNION ALL SELECT caption_outlet_raw, 'documents' FROM documents
                WHERE caption_outlet_id IS NULL AND caption_outlet_raw IS NOT NULL)
GROUP BY outlet_raw ORDER BY n DESC, outlet_raw
"""
OUTLET_COUNTS_SQL = """
WITH quoted AS (
    SELECT outlet_id, 1 AS excerpts, 0 AS citations, 0 AS captions FROM excerpts WHERE outlet_id IS NOT NULL
    UNION ALL SELECT outlet_id, 0, 1, 0 FROM citations WHERE outlet_id IS NOT NULL
    UNION ALL SELECT caption_outlet_id, 0, 0, 1 FROM documents WHERE caption_outlet_id IS NOT NULL)
SELECT o.id, o.name_ja, o.kind, sum(q.excerpts)::BIGINT AS excerpts, sum(q.citations)::BIGINT AS citations,
       sum(q.captions)::BIGINT AS captions, count(*) AS total
FROM quoted q JOIN outlets o ON o.id = q.outlet_id
GROUP BY ALL ORDER BY total DESC, o.id
"""


@app.command()
def outlets(
    out_dir: Annotated[Path, typer.Option("--out", help="Build folder to inspect.")] = Path("output/build"),
    unknown: Annotated[bool, typer.Option("--unknown", help="List outlet names the register does not know.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """Outlets a build names (quoted excerpts, inline citations, photo captions); with --unknown, the
    names to add to input/reference/outlets.tsv."""
    query(UNKNOWN_OUTLETS_SQL if unknown else OUTLET_COUNTS_SQL, out_dir, fmt, limit=10_000)


ENTITY_COUNTS_SQL = """
SELECT e.id, e.name_ja, e.kind, count(*) AS mentions, count(DISTINCT m.doc_id) AS posts,
       min(d.published_date) AS first, max(d.published_date) AS last
FROM mentions m JOIN entities e ON e.id = m.entity_id JOIN documents d USING (doc_id)
WHERE m.repeat_of IS NULL
GROUP BY ALL ORDER BY mentions DESC, e.id
"""


@app.command()
def entities(
    out_dir: Annotated[Path, typer.Option("--out", help="Build folder to inspect.")] = Path("output/build"),
    unknown: Annotated[bool, typer.Option("--unknown", help="List people named with a title whom the gazetteer does not know.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """Countries, groups, organisations and people a build mentions (repeats counted once); with
    --unknown, katakana names next to a title (大統領, 首相, 外相 …) to add to input/reference/gazetteer.tsv,
    each with its row ready to fill in."""
    if not unknown:
        return _show(out_dir, lambda con: con.sql(ENTITY_COUNTS_SQL), fmt, limit=10_000)

    def unknown_people_relation(con):
        import pyarrow as pa

        from kirinuki.clean.entities import unknown_people

        seen: dict[tuple[str, str], list] = {}
        texts = con.sql("SELECT p.text, d.doc_id FROM paragraphs p JOIN documents d USING (doc_id) "
                        "WHERE p.duplicate_of IS NULL ORDER BY p.paragraph_id")
        for text, doc_id in texts.fetchall():
            for name, title in unknown_people(text):
                seen.setdefault((name, title), [0, doc_id])[0] += 1
        found = [{"name": n, "title": t, "count": c, "first_seen_in": d,
                  "row": f"person-{n}\tperson\t{n}\t\t\t\t\t\t"} for (n, t), (c, d) in seen.items()]
        con.register("unknown_people", pa.Table.from_pylist(found, schema=pa.schema(
            [("name", pa.string()), ("title", pa.string()), ("count", pa.int64()), ("first_seen_in", pa.string()),
             ("row", pa.string())])))
        return con.sql("SELECT * FROM unknown_people ORDER BY count DESC, name, title")

    _show(out_dir, unknown_people_relation, fmt, limit=10_000)


@app.command()
def overview(
    out_dir: Annotated[Path, typer.Option("--out", help="Build folder whose overview to show.")] = Path("output/build"),
    open_page: Annotated[bool, typer.Option("--open", help="Open it in the web browser.")] = False,
) -> None:
    """The build's overview page (overview.html: posts, quotes, outlets, countries and people over
    time, re-quoted articles, dates, validation), written by every build."""
    from kirinuki.overview import PAGE

    page = out_dir / PAGE
    if not page.is_file():
        fail(f"{out_dir} has no {PAGE}: build it with kirinuki {__version__} (kirinuki build … --out {out_dir})", 2)
    print(page.resolve())
    if open_page:
        import webbrowser

        if not webbrowser.open(page.resolve().as_uri()):
            fail(f"no web browser could be started; open {page.resolve()} yourself", 1)


@app.command()
def conventions(
    paths: Annotated[Optional[list[str]], typer.Argument(help="Posts, exports or folders to detect the convention of.")] = None,
    convention: Annotated[Optional[str], typer.Option(help="Parse them with this convention instead.")] = None,
) -> None:
    """The quoting conventions kirinuki knows; with posts, the convention each is read by, its
    evidence and its excerpts (nothing is written)."""
    from kirinuki.ingest.pins import PinError, check_name
    from kirinuki.parse.conventions import shipped

    if not paths:
        for c in shipped()[0]:
            rules = c.frame_chars if c.shape == "frame" else " ".join(c.open)
            print(f"{c.name:16} {c.shape:6} {shown(rules):28} {shown(c.description)}")
        return
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        fail(f"input not found: {missing[0]} (give existing post files or folders)", 2)
    from kirinuki.ingest.posts import posts_of
    from kirinuki.ingest.sources import Reject, discover, read_source
    from kirinuki.parse.detect import parse_post

    try:
        pinned = check_name(convention, "--convention") if convention else None
        refs, rejects = discover(paths, convention=pinned)
    except PinError as e:
        fail(str(e), 2)
    for r in rejects:
        print(f"{shown(r.source_path)}: rejected ({r.code})")
    for ref in refs:
        src = read_source(ref)
        found = [src] if isinstance(src, Reject) else posts_of(src)[1]
        for one in found:
            if isinstance(one, Reject):
                print(f"{shown(one.source_path)}: rejected ({one.code})")
                continue
            parsed, name, rule = parse_post(one.text, ref.convention)
            print(f"{shown(one.key)}: {name or 'none'} ({rule or 'no quote found'}), "
                  f"{counted(len(parsed.excerpts), 'excerpt')}")


def main() -> None:
    from kirinuki import watchdog

    watchdog.start()  # the temporary Prefect server and the workers end with this command, however it ends
    try:
        app()
    except SystemExit as e:
        if e.code == INTERRUPTED:  # workers killed, Prefect drained, its server stopped, the line printed:
            sys.stdout.flush()  # what atexit would still do is wait for threads of a run that is over
            sys.stderr.flush()
            os._exit(INTERRUPTED)
        code = 0 if e.code is None else e.code
        if isinstance(code, int):
            # a command done and said (or failed and said why): the exit hooks run, then the process
            # ends without tearing its heap down (~0.7 s after a 10k append), and so without DuckDB's
            # bindings reporting, line after line, the objects still alive then (after a failure, what
            # its frames held; after a query, now and then, DuckDB's own type objects)
            import atexit

            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise


if __name__ == "__main__":
    main()
