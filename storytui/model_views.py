"""What `storytui models` prints: tables of presets and checkpoints, and one model's details."""

from __future__ import annotations

import shutil

from rich.console import Console
from rich.table import Table

from storytui import paths
from storytui.checkpoint import CheckpointMeta, list_checkpoints, read_meta, resolve_model
from storytui.errors import StoryError


def _fmt_count(n: int | None) -> str:
    if not n:
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def print_presets(console: Console | None = None) -> None:
    from storytui.model import PRESETS, count_parameters
    from storytui.tokenizer import load_tokenizer

    console = console or Console()
    table = Table(title="Model presets")
    numeric = ("parameters", "layers", "width", "heads", "context")
    for column in ("preset", *numeric, "vocabulary", "for"):
        # numbers never wrap: a narrow terminal squeezes the description instead
        table.add_column(
            column,
            justify="right" if column in numeric else "left",
            no_wrap=column != "for",
        )
    for preset in PRESETS.values():
        try:
            tokenizer = load_tokenizer(preset.tokenizer)
            vocab, params = (
                tokenizer.n_vocab,
                f"{count_parameters(preset.config(tokenizer.n_vocab)):,}",
            )
            vocab_label = f"{tokenizer.name} ({vocab:,})"
        except StoryError:
            vocab_label, params = f"{preset.tokenizer} (not available)", "-"
        table.add_row(
            preset.name,
            params,
            str(preset.n_layer),
            str(preset.n_embd),
            _heads(preset.n_head, preset.n_kv_head or preset.n_head),
            str(preset.block_size),
            vocab_label,
            preset.description,
        )
    console.print(table)


def print_model_list(console: Console | None = None) -> None:
    console = console or Console()
    entries = list_checkpoints()
    if not entries:
        console.print(f"No models in {paths.models_dir()}.")
        from storytui.checkpoint import NO_MODEL_HINT

        console.print(NO_MODEL_HINT[0].upper() + NO_MODEL_HINT[1:] + ".")
        return
    table = Table(title=f"Models in {paths.models_dir()}")
    for column in ("name", "preset", "parameters", "stage", "tokens seen", "val bpb", "date"):
        table.add_column(column)
    for entry in entries:
        name = entry.name + (" (bundled)" if entry.bundled else "")
        if entry.meta is None:
            table.add_row(name, "[red]unreadable[/]", "", "", "", "", entry.error or "")
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
    console.print(table)


def _heads(query: int, key_value: int) -> str:
    """'12' for full attention, '12/4' when 12 query heads share 4 key/value heads."""
    return str(query) if query == key_value else f"{query}/{key_value}"


def describe(meta: CheckpointMeta) -> list[tuple[str, str]]:
    cfg = meta.model
    return [
        ("preset", meta.preset),
        (
            "architecture",
            f"{cfg.arch}: {cfg.n_layer} layers, width {cfg.n_embd}, "
            f"{_heads(cfg.n_head, cfg.kv_heads)} heads, context {cfg.block_size}",
        ),
        ("parameters", f"{meta.n_params:,}"),
        ("tokenizer", f"{meta.tokenizer} ({meta.tokenizer_hash})"),
        ("stage", meta.stage + (f" (from {meta.parent})" if meta.parent else "")),
        ("steps", f"{meta.steps:,}"),
        ("tokens seen", f"{meta.tokens_seen:,}"),
        ("val loss", f"{meta.val_loss:.4f}" if meta.val_loss is not None else "-"),
        ("val bits/byte", f"{meta.val_bpb:.4f}" if meta.val_bpb is not None else "-"),
        ("weights", meta.weights_dtype),
        ("created", meta.created),
    ]


def print_model_info(name: str, console: Console | None = None) -> None:
    console = console or Console()
    directory = resolve_model(name)
    meta = read_meta(directory)
    table = Table(title=f"{directory.name}  ({directory})", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in describe(meta):
        table.add_row(key, value)
    console.print(table)
    try:
        from trainer.curves import print_curves

        print_curves(directory.name, console=console, quiet_if_missing=True)
    except ImportError:
        pass


def remove_model(name: str, confirm: bool = True) -> None:
    directory = paths.model_dir(name)
    if not directory.is_dir():
        raise StoryError(f"no model named {name!r} in {paths.models_dir()}")
    if confirm:
        import typer

        if not typer.confirm(f"Delete {directory}?", default=False):
            raise StoryError("not deleted")
    shutil.rmtree(directory)
    Console().print(f"Deleted {directory}.")
