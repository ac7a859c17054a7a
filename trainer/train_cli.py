"""`storytui train tokenizer|pretrain|finetune|curves`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

train_app = typer.Typer(no_args_is_help=True)


@train_app.command("tokenizer")
def train_tokenizer(
    name: Annotated[str, typer.Option(help="Vocabulary name (file <name>.tiktoken).")] = "storytui-16k",
    size: Annotated[int, typer.Option(help="Vocabulary size including <|endoftext|>.")] = 16384,
    out: Annotated[Optional[Path], typer.Option(help="Output file (default: the data dir's cache).")] = None,
) -> None:
    """Train a byte-level BPE vocabulary on the cleaned Gutenberg + WritingPrompts text."""
    from trainer.tokenizer_cli import run_train_tokenizer

    run_train_tokenizer(name=name, size=size, out=out)
