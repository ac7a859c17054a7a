"""Print (and optionally save) a `storytui models eval` report."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from storytui.atomic import atomic_write_text
from storytui.errors import StoryError


def run_eval(
    name: str | None, *, split: str, samples: int, max_tokens: int, json_out: Path | None
) -> dict:
    from trainer.evaluate import evaluate

    if json_out is not None:
        json_out = _report_path(json_out)
    console = Console()
    with console.status("Evaluating…"):
        report = evaluate(name, split=split, n_samples=samples, max_tokens=max_tokens)
    table = Table(title=f"{report.model} — held-out evaluation")
    for column in ("corpus", "bits/byte", "word ppl", "tokens", "words"):
        table.add_column(column, justify="left" if column == "corpus" else "right")
    for label, scores in (
        (f"WritingPrompts {split}", report.writingprompts),
        ("Gutenberg held-out books", report.gutenberg),
    ):
        if scores:
            table.add_row(
                label,
                f"{scores['bits_per_byte']:.4f}",
                f"{scores['word_perplexity']:.1f}",
                f"{scores['tokens']:,}",
                f"{scores['words']:,}",
            )
    console.print(table)
    if report.generation:
        g = report.generation
        console.print(
            f"Generations ({g['samples']} × {g['tokens_per_sample']} tokens, seed {g['seed']}): "
            f"distinct-2 {g['distinct_2']:.3f}, distinct-3 {g['distinct_3']:.3f}, "
            f"repeated 4-grams {g['repeated_4gram_share']:.3f}"
        )
        for sample in report.samples:
            console.rule(f"[bold]{sample['prompt']}[/] (seed {sample['seed']})")
            console.print(sample["text"], markup=False, highlight=False)
    data = report.to_json()
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return data


def _report_path(path: Path) -> Path:
    """``--json``, checked before the evaluation runs (minutes on real data); its folder must
    exist already, so that a mistyped path is an error rather than a new tree of folders."""
    path = path.expanduser()
    if path.is_dir():
        raise StoryError(f"--json {path} is a folder; give a file: {path / 'eval.json'}")
    if not path.parent.is_dir():
        raise StoryError(f"--json {path}: the folder {path.parent} does not exist")
    return path
