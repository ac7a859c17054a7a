"""`storytui data download gutenberg|writingprompts` and `storytui data status`.

A thin typer layer: the work lives in ``trainer.sources`` and ``trainer.dataset``, imported
when a command runs so that ``storytui --help`` stays fast. Problems surface as ``StoryError``
for the CLI root to print as one line.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from storytui import paths
from storytui.errors import StoryError

if TYPE_CHECKING:
    from trainer.sources.gutenberg import GutenbergReport

data_app = typer.Typer(no_args_is_help=True, help="Download, clean and inspect training data.")
download_app = typer.Typer(no_args_is_help=True, help="Fetch (or import) and clean a source.")
data_app.add_typer(download_app, name="download")


@download_app.command("gutenberg")
def download_gutenberg_cmd(
    ids: Annotated[
        str | None, typer.Option("--ids", help="Comma-separated Project Gutenberg ids.")
    ] = None,
    ids_file: Annotated[
        Path | None, typer.Option("--ids-file", help="A file with one id per line (# comments).")
    ] = None,
    mirror: Annotated[
        str | None, typer.Option("--mirror", help="Mirror base URL (default gutenberg.org).")
    ] = None,
    url_pattern: Annotated[
        str | None,
        typer.Option("--url-pattern", help="Book URL with {mirror} and {id} placeholders."),
    ] = None,
    from_dir: Annotated[
        Path | None, typer.Option("--from", help="Import local .txt books instead of fetching.")
    ] = None,
    delay: Annotated[float, typer.Option("--delay", help="Seconds between downloads.")] = 2.0,
    force: Annotated[bool, typer.Option("--force", help="Fetch and clean again.")] = False,
) -> None:
    """Project Gutenberg books → cleaned text, one file per book."""
    from trainer.sources import BINARY_REASON, gutenberg

    console = Console()
    started = time.perf_counter()
    if from_dir is not None:
        if ids is not None or ids_file is not None:
            raise StoryError("--from imports every book in the folder; drop --ids/--ids-file")
        report = gutenberg.ingest_local(from_dir, force=force, console=console)
    else:
        book_ids = None
        if ids is not None:
            book_ids = gutenberg.parse_ids(ids)
            if not book_ids:
                raise StoryError("--ids: no book ids given (for example --ids 2701,1342)")
        if ids_file is not None:
            book_ids = (book_ids or []) + gutenberg.read_ids_file(ids_file)
        report = gutenberg.download_gutenberg(
            book_ids,
            mirror=gutenberg.DEFAULT_MIRROR if mirror is None else mirror,
            delay=delay,
            url_pattern=gutenberg.DEFAULT_URL_PATTERN if url_pattern is None else url_pattern,
            force=force,
            console=console,
        )
    console.print(_gutenberg_summary(report, time.perf_counter() - started), highlight=False)
    for failure in report.failed:
        console.print(f"  [yellow]failed[/] {failure}", highlight=False)
    for path in report.binary:
        console.print(f"  [yellow]skipped[/] {path}: {BINARY_REASON}", highlight=False)


def _gutenberg_summary(report: GutenbergReport, elapsed: float) -> str:
    """One line of counts; binary files are mentioned only when there were some."""
    binary = f", {len(report.binary)} binary skipped" if report.binary else ""
    return (
        f"Gutenberg: {len(report.cleaned)} cleaned ({report.clean_bytes / 1e6:.1f} MB), "
        f"{len(report.skipped)} already clean, {len(report.failed)} failed{binary} "
        f"in {elapsed:.0f}s → {paths.clean_dir('gutenberg')}"
    )


@download_app.command("writingprompts")
def download_writingprompts_cmd(
    sources: Annotated[
        list[Path] | None,
        typer.Option(
            "--from",
            help="Import a writingPrompts.tar.gz, a folder of split files, or CSV/JSON/JSONL "
            "files (repeatable; folders are searched).",
        ),
    ] = None,
    url: Annotated[str | None, typer.Option("--url", help="Where to fetch the release.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Fetch the archive again.")] = False,
) -> None:
    """WritingPrompts human prompt/story pairs → cleaned train/valid/test JSONL."""
    from trainer.sources import writingprompts

    console = Console()
    started = time.perf_counter()
    if sources:
        if url is not None:
            raise StoryError("use either --from (local data) or --url (download), not both")
        report = writingprompts.ingest(sources, console=console)
    else:
        report = writingprompts.download_writingprompts(url, force=force, console=console)
    elapsed = time.perf_counter() - started
    console.print(_pairs_table(report.to_json()))
    totals = report.split_totals()
    console.print(
        f"WritingPrompts: {_count(sum(totals.values()), 'pair')} "
        f"({', '.join(f'{s} {n:,}' for s, n in totals.items())}), "
        f"{sum(report.duplicates.values()):,} duplicates and "
        f"{sum(report.dropped.values()):,} empty/deleted stories dropped, "
        f"{sum(report.machine.values()):,} machine-written rows ignored, in {elapsed:.0f}s "
        f"→ {paths.clean_dir('writingprompts')}",
        highlight=False,
    )
    _say_what_was_replaced(console, report)
    for source, rows in sorted(report.unclear.items()):
        console.print(
            f"  [yellow]left out:[/] {rows:,} rows of {source} whose label is a number, which "
            "does not say who wrote them; label them human or machine to use them",
            highlight=False,
        )
    for skipped in report.skipped_files:
        console.print(f"  [dim]not read:[/] {skipped}", highlight=False)


@data_app.command("status")
def status_cmd() -> None:
    """What is downloaded, cleaned and tokenised, with counts."""
    console = Console()
    console.print(f"[bold]Data folder[/]: {paths.data_dir()}", highlight=False)
    for line in _gutenberg_status() + _writingprompts_status():
        console.print(line, highlight=False)
    console.print(_shards_table())
    report = _read_json(paths.clean_dir("writingprompts") / "report.json")
    if report:
        console.print(_pairs_table(report))


def _gutenberg_status() -> list[str]:
    from trainer.sources.gutenberg import raw_books

    raw = raw_books()
    clean = sorted(paths.clean_dir("gutenberg").glob("*.txt"))
    size = sum(p.stat().st_size for p in clean) / 1e6
    return [
        f"Gutenberg: {len(raw)} downloaded, {len(clean)} cleaned books ({size:.1f} MB)",
    ]


def _writingprompts_status() -> list[str]:
    archive = paths.raw_dir("writingprompts") / "writingPrompts.tar.gz"
    fetched = f"archive {archive.stat().st_size / 1e6:.0f} MB" if archive.exists() else "no archive"
    counts = []
    for split in ("train", "valid", "test"):
        path = paths.clean_dir("writingprompts") / f"{split}.jsonl"
        if path.exists():
            with open(path, encoding="utf-8") as handle:
                counts.append(f"{split} {sum(1 for line in handle if line.strip()):,}")
    cleaned = ", ".join(counts) if counts else "no cleaned pairs"
    return [f"WritingPrompts: {fetched}; {cleaned}"]


def _shards_table() -> Table:
    table = Table(title="Token shards", title_justify="left")
    for column in ("name", "tokenizer", "split", "documents", "tokens", "targets"):
        table.add_column(column, justify="right" if column in ("documents", "tokens") else "left")
    root = paths.data_dir() / "shards"
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        meta = _read_json(folder / "meta.json")
        if not meta:
            continue
        for split, info in meta.get("splits", {}).items():
            table.add_row(
                folder.name,
                str(meta.get("tokenizer", "?")),
                split,
                f"{info.get('documents', 0):,}",
                f"{info.get('tokens', 0):,}",
                f"{info.get('targets', 0):,}",
            )
    if not table.row_count:
        table.add_row("(none built yet)", "", "", "", "", "")
    return table


def _count(n: int, thing: str) -> str:
    return f"{n:,} {thing}{'' if n == 1 else 's'}"


def _say_what_was_replaced(console: Console, report) -> None:
    """Each import replaces the last: a second ``--from`` must not drop the first unannounced."""
    earlier = report.replaced
    if not earlier or "sources" not in earlier or set(earlier["sources"]) <= set(report.sources):
        return  # nothing earlier, an earlier report that does not say, or all read again
    pairs = sum(n for _, _, n in earlier.get("kept", []))
    where = earlier["sources"]  # not all of them read again, so not empty
    console.print(
        f"  replaced the {_count(pairs, 'pair')} imported before from {', '.join(where)}"
        + "; to keep them too, import every source at once: "
        + " ".join(
            f"--from {shlex.quote(source)}" for source in dict.fromkeys([*where, *report.sources])
        ),
        highlight=False,
        markup=False,
    )


def _pairs_table(report: dict) -> Table:
    table = Table(title="WritingPrompts pairs by source", title_justify="left")
    table.add_column("source")
    for column in ("train", "valid", "test", "duplicates", "dropped", "machine rows ignored"):
        table.add_column(column, justify="right")
    kept: dict[str, dict[str, int]] = {}
    for source, split, n in report.get("kept", []):
        kept.setdefault(source, {})[split] = n
    counted = ("duplicates", "dropped", "machine_rows_ignored", "unclear_label_rows")
    names = sorted(set(kept).union(*(report.get(name, {}) for name in counted)))
    for source in names:
        row = kept.get(source, {})
        table.add_row(
            source,
            *(f"{row.get(split, 0):,}" for split in ("train", "valid", "test")),
            f"{report.get('duplicates', {}).get(source, 0):,}",
            f"{report.get('dropped', {}).get(source, 0):,}",
            f"{report.get('machine_rows_ignored', {}).get(source, 0):,}",
        )
    return table


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def main() -> None:
    """``python -m trainer.data_cli``: the same commands, errors as one line."""
    try:
        data_app()
    except StoryError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}", highlight=False)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
