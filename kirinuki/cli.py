"""Command line: `kirinuki build|query`. Errors are one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="kirinuki: Japanese news-clipping posts -> clean, validated Parquet tables.")
err = Console(stderr=True)
out = Console()


SHOWN_REJECTS = 50


def shown(text: object) -> str:
    """User-controlled text (file names, SQL, DuckDB's messages) as the terminal must show it:
    rich markup escaped, control characters written as escapes."""
    from rich.markup import escape

    return escape("\n".join(shown_value(line) for line in str(text).split("\n")))


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {shown(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def build(
    paths: Annotated[list[str], typer.Argument(help="Post files, blog exports (MTIF, WXR), saved pages, or folders of them.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Build folder to (re)create.")] = Path("output/build"),
    batch_files: Annotated[int, typer.Option(help="Files per parse task.", min=1)] = 256,
    max_file_mb: Annotated[float, typer.Option(help="Reject files larger than this.", min=0.001)] = 64.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the build summary as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")] = False,
    duckdb_memory_mb: Annotated[int, typer.Option(help="Memory limit for DuckDB stages (spills to disk beyond).", min=64)] = 2048,
    workers: Annotated[int, typer.Option(help="Parse processes (0: one per core).", min=0)] = 0,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Parse every file again, ignoring the previous build's cache.")] = False,
    runner: Annotated[str, typer.Option(help="local, or dask (parse on an existing Dask cluster).")] = "local",
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler address for --runner dask, e.g. tcp://10.0.0.5:8786.")] = None,
    drafts: Annotated[bool, typer.Option("--drafts", help="Read the drafts in blog exports as posts (flagged draft) instead of rejecting them.")] = False,
    convention: Annotated[Optional[str], typer.Option(help="Pin this quoting convention for every post (default: detected per post; see 'kirinuki conventions').")] = None,
) -> None:
    """Read posts, parse them and write the Parquet tables to --out (atomically)."""
    from kirinuki.store.files import BuildLocked, UnsafeOutput, check_output, locked

    missing = [p for p in paths if not Path(p).exists() and not Path(p).is_symlink()]
    if missing:
        fail(f"input not found: {missing[0]} (give existing post files or folders)", 2)
    from kirinuki.ingest.pins import PinError, check_name

    try:
        convention = check_name(convention, "--convention") if convention else None
    except PinError as e:
        fail(str(e), 2)
    try:  # before Prefect starts, so that a refusal is instant (the flow checks both again)
        check_output(out_dir, paths)
        with locked(out_dir):
            pass
    except UnsafeOutput as e:
        fail(str(e), 2)
    except BuildLocked as e:
        fail(str(e), 3)
    from kirinuki.flows.build import build_flow as flow_for
    from kirinuki.validate import ValidationFailed

    try:
        build_flow = flow_for(runner, scheduler)
    except ValueError as e:
        fail(str(e), 2)

    import kirinuki.flows.build as pipeline

    try:
        with _progress(enabled=not (quiet or as_json)) as hook:
            pipeline.progress = hook
            summary = build_flow(paths, str(out_dir), batch_files=batch_files, max_file_mb=max_file_mb,
                                 duckdb_memory_mb=duckdb_memory_mb, workers=workers, cache=not no_cache,
                                 runner=runner, drafts=drafts, convention=convention)
    except PinError as e:
        fail(f"{e}; nothing was built", 2)
    except UnsafeOutput as e:
        fail(str(e), 2)
    except BuildLocked as e:
        fail(str(e), 3)
    except ValidationFailed as e:
        fail(f"validation failed, nothing was written (the previous build is unchanged): {e}", 1)
    except KeyboardInterrupt:
        fail("interrupted; nothing was written and the previous build is unchanged", 130)
    except OSError as e:
        log = pipeline.failed_log(out_dir)
        kept = f" Log: {log}" if log.is_file() else ""
        fail(f"cannot write the build to {out_dir}: {e.strerror or e}; the previous build is unchanged.{kept}", 1)
    except Exception as e:  # noqa: BLE001 - a bug: still one line, and the previous build stays
        if os.environ.get("KIRINUKI_DEBUG"):
            raise
        fail(f"build failed ({type(e).__name__}: {_one_line(e)}); the previous build is unchanged. "
             f"Log: {pipeline.failed_log(out_dir)}", 1)
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, sort_keys=True))
    elif not quiet:
        _print_summary(summary, out_dir, paths)


@contextmanager
def _progress(enabled: bool):
    """A progress hook for the parse stage: a rich bar (files, MB, ETA) on a terminal, a plain line
    every 10 s otherwise, nothing when disabled."""
    if not enabled:
        yield None
        return
    if err.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("parsing"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                      TextColumn("{task.fields[mb]:,.1f} MB"), TimeRemainingColumn(), console=err,
                      transient=True) as bar:
            task = bar.add_task("parse", total=None, mb=0.0)

            def hook(done: int, total: int, n_bytes: int) -> None:
                bar.update(task, completed=done, total=total, mb=n_bytes / 1e6)

            yield hook
        return
    started = last = time.monotonic()

    def plain(done: int, total: int, n_bytes: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 10:  # long runs only: a short one stays quiet
            last = now
            rate = done / max(now - started, 1e-9)
            eta = (total - done) / rate if rate else 0
            err.print(f"parsing: {done:,}/{total:,} files, {n_bytes / 1e6:,.1f} MB, ETA {eta:,.0f} s", highlight=False)

    yield plain


def _one_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else "no message"


def counted(n: int, word: str) -> str:
    """`1 post`, `2 posts`: a count with its noun."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _print_summary(s: dict, out_dir: Path, inputs: list[str]) -> None:
    where = shown(out_dir)
    if s.get("up_to_date"):
        out.print(f"{where} is up to date: no input, parameter or code change since it was built "
                  f"(checked {counted(s['inputs']['files'], 'file')} in {s['durations_s']['total']:.1f} s; "
                  "--no-cache rebuilds)", highlight=False)
        return
    out.print(f"kirinuki build -> {where}", highlight=False)
    t = Table()
    t.add_column("table")
    t.add_column("rows", justify="right")
    for name, n in s["rows"].items():
        t.add_row(name, f"{n:,}")
    out.print(t)
    i = s["inputs"]
    v = s["validation"]
    n_rejected = sum(s["rejects"].values())
    kinds = ", ".join(f"{n:,} {code}" for code, n in s["rejects"].items())
    out.print(f"{counted(i['read'], 'post')} read ({i['bytes'] / 1e6:,.1f} MB), "
              f"{n_rejected:,} rejected{f' ({kinds})' if kinds else ''}, "
              f"{counted(v['checks'], 'check')} {'pass' if v['success'] else 'FAILED'}, "
              f"{counted(sum(v['quarantined'].values()), 'row')} quarantined, "
              f"in {s['durations_s'].get('total', 0):.1f} s (report: {shown(out_dir / 'validation' / 'report.html')})",
              highlight=False)
    listed = s.get("rejected_files", [])
    for r in listed[:SHOWN_REJECTS]:
        out.print(f"  rejected {shown(r['source_path'])}: {r['code']} — {shown(r['reason'])}",
                  highlight=False, soft_wrap=True)
    if n_rejected > SHOWN_REJECTS:
        out.print(f"  … and {n_rejected - SHOWN_REJECTS:,} more: kirinuki query \"SELECT * FROM rejects\" --out {where}",
                  highlight=False)
    if i["read"] == 0 and not n_rejected:
        from kirinuki.ingest.sources import DEFAULT_PATTERNS

        err.print(f"[yellow]warning:[/] no posts found in {shown(', '.join(inputs))}: kirinuki reads "
                  f"{', '.join(DEFAULT_PATTERNS)} files"
                  f"{_other_files(inputs)}; the build is empty", highlight=False, soft_wrap=True)


def _other_files(inputs: list[str]) -> str:
    """`` (3 other files there: .md, .html)`` for the empty-build warning, or nothing."""
    suffixes: dict[str, int] = {}
    for raw in inputs:
        root = Path(raw)
        for p in [root] if root.is_file() else (root.rglob("*") if root.is_dir() else []):
            if p.is_file() and not p.name.endswith(".meta.json"):
                suffixes[p.suffix or p.name] = suffixes.get(p.suffix or p.name, 0) + 1
    if not suffixes:
        return ""
    return f" ({counted(sum(suffixes.values()), 'other file')} there: {shown(', '.join(sorted(suffixes)))})"


@app.command()
def serve(
    paths: Annotated[list[str], typer.Argument(help="Post files or folders to build from on every run.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Build folder each run replaces.")] = Path("output/build"),
    name: Annotated[str, typer.Option(help="Deployment name (flow kirinuki-build/<name>).")] = "kirinuki",
    cron: Annotated[Optional[str], typer.Option(help="Schedule as a cron string, e.g. '0 3 * * *'.")] = None,
    interval: Annotated[Optional[int], typer.Option(help="Schedule every N seconds.", min=60)] = None,
) -> None:
    """Serve the build flow as a Prefect deployment (needs PREFECT_API_URL): runs on its schedule and
    whenever triggered from the Prefect UI or `prefect deployment run kirinuki-build/<name>`."""
    if not os.environ.get("PREFECT_API_URL"):
        fail("kirinuki serve needs a Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)", 2)
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
    from kirinuki.store.query import QueryError, batches, open_build, run_query, time_limit

    if fmt not in ("table", "csv", "json"):
        fail(f"unknown --format {fmt!r}: use table, csv or json", 2)
    con = None
    try:
        con = open_build(out_dir)
        rel = run_query(con, sql)
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


def shown_value(v: object) -> str:
    """A value as a table cell: control characters written as escapes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(v))


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
def release(
    version: Annotated[str, typer.Argument(help="Semantic version of the release, e.g. 1.0.0.")],
    build_dir: Annotated[Path, typer.Option("--from", help="Validated build folder to release.")] = Path("output/build"),
    dest: Annotated[str, typer.Option("--to", help="Releases folder, or s3://bucket/prefix.")] = "output/releases",
    text: Annotated[str, typer.Option("--text", help="metadata (quoted text withheld) or full.")] = "metadata",
    name: Annotated[str, typer.Option("--name", help="Dataset name (folder <name>-<version>).")] = "kirinuki",
    date: Annotated[Optional[str], typer.Option("--date", help="Release date YYYY-MM-DD (default: today, UTC).")] = None,
    homepage: Annotated[Optional[str], typer.Option("--homepage", help="URL cited in the card and metadata.")] = None,
    endpoint_url: Annotated[Optional[str], typer.Option("--endpoint-url", help="S3 endpoint (default: AWS_ENDPOINT_URL).")] = None,
    about_file: Annotated[Optional[Path], typer.Option("--about", help="release.toml describing the corpus: creator, publisher, homepage, card sections (default: ./release.toml if present).")] = None,
) -> None:
    """Publish a validated build as an immutable, verifiable dataset release."""
    from kirinuki.release import ReleaseError
    from kirinuki.release.about import read_about

    try:
        about = read_about(about_file)
        if dest.startswith("s3://"):
            from kirinuki.release.remote import publish_s3

            rel = publish_s3(build_dir, version, dest, text, name, date, homepage, endpoint_url, about)
            where = f"{dest.rstrip('/')}/{name}-{version}"
        else:
            from kirinuki.release import make_release

            rel = make_release(build_dir, version, Path(dest), text, name, date, homepage, about)
            where = str(rel.path)
    except ReleaseError as e:
        fail(str(e), 2)
    except OSError as e:
        fail(f"cannot write the release to {dest}: {e.strerror or e}", 1)
    c = rel.changes
    since = f"since {c['previous_version']}" if c["previous_version"] else "(first release)"
    totals = {k: sum(t[k] for t in c["tables"].values()) for k in ("added", "removed", "changed")}
    out.print(f"released {shown(name)} {shown(version)} ({shown(text)} text) -> {shown(where)}: rows {shown(since)} "
              f"+{totals['added']:,} -{totals['removed']:,} ~{totals['changed']:,}", highlight=False)
    if not rel.manifest.get("homepage"):
        out.print("note: no --homepage (nor homepage in release.toml): croissant.json names a placeholder url "
                  "(https://example.invalid/…); release again with the dataset's address before publishing it",
                  highlight=False)


@app.command()
def verify(
    release_dir: Annotated[Path, typer.Argument(help="Release folder to check.")],
) -> None:
    """Re-check a release's checksums, schemas and row counts from its own files (exit 1 on any problem)."""
    from kirinuki.release import verify as verify_release

    if not release_dir.is_dir():
        fail(f"{release_dir} is not a folder; give a release folder such as output/releases/kirinuki-1.0.0", 2)
    if not (release_dir / "SHA256SUMS").exists() and (release_dir / "versions.json").is_file():
        inside = sorted(p.name for p in release_dir.iterdir() if (p / "SHA256SUMS").is_file())
        fail(f"{release_dir} is a releases folder, not a release; verify one of its releases, e.g. "
             f"{release_dir / (inside[-1] if inside else 'kirinuki-1.0.0')}", 2)
    problems = verify_release(release_dir)
    for p in problems:
        err.print(f"[bold red]mismatch:[/] {shown(p)}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    out.print(f"{shown(release_dir)}: every checksum, schema and row count matches", highlight=False)


@app.command()
def synth(
    posts: Annotated[int, typer.Option("--posts", help="Posts to generate.", min=1)] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same corpus).")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for post_*.txt and ground_truth.csv.")] = Path("output/synth"),
    excerpts_per_post: Annotated[int, typer.Option(help="Mean excerpts per post.", min=1)] = 7,
) -> None:
    """Generate a fictional corpus in the clipping grammar, with ground truth for dedup."""
    from kirinuki.synth import write_corpus

    if out_dir.exists() and any(out_dir.glob("post_*.txt")):
        fail(f"{out_dir} already holds a generated corpus; remove it or choose another --out", 2)
    stats = write_corpus(out_dir, posts, seed, excerpts_per_post)
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
    app()


if __name__ == "__main__":
    main()
