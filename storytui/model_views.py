"""What `storytui models` prints: tables of presets and checkpoints, and one model's details."""

from __future__ import annotations

import shutil
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from storytui import paths
from storytui.checkpoint import (
    VOCABULARY_FILE,
    CheckpointMeta,
    ModelEntry,
    check_checkpoint,
    list_checkpoints,
    model_candidates,
    read_meta,
    resolve_model,
    values_problem,
)
from storytui.errors import StoryError


def _fmt_count(n: int | None) -> str:
    if not n:
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def print_fitting(console: Console, table: Table) -> None:
    """A table, or where the terminal is too narrow for its columns (whose numbers and names
    never wrap) the same rows as blocks: the first cell as a heading, then each other column
    as ``name value`` lines, which wrap instead of being cut to an ellipsis."""
    if _least_width(console, table) <= console.width:
        console.print(table)
        return
    if table.title:
        console.print(Text(str(table.title), style="bold"))
    headers = [str(column.header) for column in table.columns]
    cells = [list(column.cells) for column in table.columns]
    for row in zip(*cells, strict=True):
        console.print(Text.from_markup(str(row[0]), style="bold"))
        for header, cell in zip(headers[1:], row[1:], strict=True):
            if str(cell):
                line = Text.assemble(f"  {header}: ", Text.from_markup(str(cell)))
                console.print(line, highlight=False)
    if table.caption:
        console.print(Text(str(table.caption), style="dim"))


def _least_width(console: Console, table: Table) -> int:
    """The narrowest a table can be without cutting a cell: no-wrap columns as wide as their
    longest cell, the others as their longest word, plus two characters between columns and
    one at each edge (these tables' box and collapsed padding)."""
    widths = []
    for column in table.columns:
        measured = [console.measure(cell) for cell in (column.header, *column.cells)]
        cells = [m.maximum if column.no_wrap else m.minimum for m in measured]
        widths.append(max([*cells, column.min_width or 0]))
    return sum(widths) + 2 * len(widths)


def print_presets(console: Console | None = None) -> None:
    """One row per preset; the vocabularies' sizes go below the table so that it fits in 80
    columns (the parameter counts depend on them)."""
    from storytui.model import PRESETS, count_parameters
    from storytui.tokenizer import load_tokenizer

    console = console or Console()
    table = Table(title="Model presets", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    numeric = ("parameters", "layers", "width", "heads", "context")
    for column in ("preset", *numeric, "vocabulary", "for"):
        # numbers and names never wrap: a narrow terminal wraps the description instead
        table.add_column(
            column,
            justify="right" if column in numeric else "left",
            no_wrap=column != "for",
            min_width=12 if column == "for" else None,
        )
    vocabularies: dict[str, str] = {}
    for preset in PRESETS.values():
        try:
            tokenizer = load_tokenizer(preset.tokenizer)
            params = f"{count_parameters(preset.config(tokenizer.n_vocab)):,}"
            vocab_name = tokenizer.name
            vocabularies[vocab_name] = f"{tokenizer.n_vocab:,} tokens"
        except StoryError:
            vocab_name, params = str(preset.tokenizer), "-"
            vocabularies[vocab_name] = "not available here"
        table.add_row(
            preset.name,
            params,
            str(preset.n_layer),
            str(preset.n_embd),
            _heads(preset.n_head, preset.n_kv_head or preset.n_head),
            str(preset.block_size),
            vocab_name,
            preset.description,
        )
    table.caption = "; ".join(f"{name}: {size}" for name, size in vocabularies.items())
    print_fitting(console, table)


def print_model_list(console: Console | None = None) -> None:
    """The checkpoints, with a ``*`` on the one a command without ``--model`` tries first
    (one whose weights turn out not to load is skipped, with a warning)."""
    console = console or Console()
    entries = list_checkpoints()
    if not entries:
        console.print(f"No models in {paths.models_dir()}.")
        from storytui.checkpoint import NO_MODEL_HINT

        console.print(NO_MODEL_HINT[0].upper() + NO_MODEL_HINT[1:] + ".")
        return
    problems = {entry.path: _load_problem(entry) for entry in entries}
    usable = [path for path in model_candidates(entries) if problems[path] is None]
    first_choice = next(iter(usable), None)
    table = Table(
        title=f"Models in {paths.models_dir()}",
        caption="* used when no --model is given",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in ("name", "preset", "params", "stage", "tokens", "val bpb", "date"):
        table.add_column(
            column, no_wrap=column != "name", min_width=9 if column == "name" else None
        )
    broken = []
    for entry in entries:
        name = ("* " if entry.path == first_choice else "") + entry.name
        name += " (bundled)" if entry.bundled else ""
        if problems[entry.path] is not None:
            table.add_row(name, "", "", "", "", "", "[red]unreadable[/]")
            broken.append(problems[entry.path])
            continue
        m = entry.meta
        table.add_row(
            name,
            m.preset,
            _fmt_count(m.n_params),
            m.stage,
            _fmt_count(m.tokens_seen),
            f"{m.val_bpb:.3f}" if m.val_bpb is not None else "-",
            m.created[:16].replace("T", " "),
        )
    print_fitting(console, table)
    for error in broken:  # whole, below the table: a cell would cut the reason short
        console.print(f"[red]unreadable:[/] {error}", highlight=False)


def _load_problem(entry: ModelEntry) -> str | None:
    """Why ``entry`` would not load: weights cut short or a hand-edited size from the file's
    header, NaN from its values (read once per weights file, then remembered), so the ``*``
    goes where a command without ``--model`` would really go."""
    if entry.meta is None:
        return entry.error or "unreadable"
    try:
        check_checkpoint(entry.path, entry.meta)
    except StoryError as exc:
        return str(exc)
    return values_problem(entry.path)


def _heads(query: int, key_value: int) -> str:
    """'12' for full attention, '12/4' when 12 query heads share 4 key/value heads."""
    return str(query) if query == key_value else f"{query}/{key_value}"


def describe(meta: CheckpointMeta, directory: Path | None = None) -> list[tuple[str, str]]:
    cfg = meta.model
    carried = directory is not None and (directory / VOCABULARY_FILE).is_file()
    return [
        ("preset", meta.preset),
        (
            "architecture",
            f"{cfg.arch}: {cfg.n_layer} layers, width {cfg.n_embd}, "
            f"{_heads(cfg.n_head, cfg.kv_heads)} heads, context {cfg.block_size}",
        ),
        ("parameters", f"{meta.n_params:,}"),
        ("tokenizer", f"{meta.tokenizer} ({meta.tokenizer_hash})"),
        *([("tokenizer copy", f"{VOCABULARY_FILE}, in the checkpoint")] if carried else []),
        ("stage", meta.stage + (f" (from {meta.parent})" if meta.parent else "")),
        ("steps", f"{meta.steps:,}"),
        ("tokens seen", f"{meta.tokens_seen:,}"),
        ("val loss", f"{meta.val_loss:.4f}" if meta.val_loss is not None else "-"),
        ("val bits/byte", f"{meta.val_bpb:.4f}" if meta.val_bpb is not None else "-"),
        ("weights", meta.weights_dtype),
        ("created", meta.created),
    ]


def print_model_info(name: str, console: Console | None = None) -> None:
    """The model's details and loss curve; a model that would not load is still described
    (from its config), and the reason it would not load follows as the command's error."""
    console = console or Console()
    directory = resolve_model(name)
    meta = read_meta(directory)
    try:
        check_checkpoint(directory, meta)
        problem = values_problem(directory)
    except StoryError as exc:
        problem = str(exc)
    table = Table(title=f"{directory.name}  ({directory})", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # a hash or path folds onto the next line, never cut
    for key, value in describe(meta, directory):
        table.add_row(key, value)
    console.print(table)
    try:
        from trainer.curves import print_curves

        print_curves(directory.name, console=console, quiet_if_missing=True)
    except ImportError:
        pass
    if problem is not None:
        raise StoryError(f"{directory.name} cannot be loaded: {problem}")


def remove_model(name: str, confirm: bool = True) -> None:
    """Delete one model directory inside ``models/``, by name only: never a path, so a slip of
    the keyboard cannot reach anything else."""
    name = name.rstrip("/") or name  # `mymodel/`, as a shell completes it
    directory = paths.model_dir(name)
    run = paths.run_dir(name)
    if not directory.is_dir():
        bundled = (
            " (the bundled model cannot be removed)" if name == paths.BUNDLED_MODEL_NAME else ""
        )
        raise StoryError(f"no model named {name!r} in {paths.models_dir()}{bundled}")
    doomed = [directory, run] if run.is_dir() else [directory]
    if confirm:
        import typer

        what = " and its training run " + str(run) if run.is_dir() else ""
        try:
            sure = typer.confirm(f"Delete {directory}{what}?", default=False)
        except typer.Abort as exc:  # click's answer to Ctrl-C and to end of input alike
            if isinstance(exc.__context__, EOFError):
                raise StoryError(
                    "not deleted (no answer; pass -y to delete without asking)"
                ) from None
            raise
        if not sure:
            raise StoryError("not deleted")
    for path in doomed:  # the run too: else `train --out NAME` would offer to resume a ghost
        shutil.rmtree(path)
    Console().print(f"Deleted {' and '.join(str(p) for p in doomed)}.")
