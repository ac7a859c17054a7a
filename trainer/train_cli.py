"""`storytui train tokenizer|pretrain|finetune|curves`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

train_app = typer.Typer(no_args_is_help=True)


@train_app.command("tokenizer")
def train_tokenizer(
    name: Annotated[
        str | None,
        typer.Option(
            help="Vocabulary name, as --tokenizer takes it (default: custom-16k for 16,384)."
        ),
    ] = None,
    size: Annotated[int, typer.Option(help="Vocabulary size including <|endoftext|>.")] = 16384,
    out: Annotated[
        Path | None,
        typer.Option(help="Output file (default: the data dir's tokenizers/NAME.tiktoken)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a vocabulary of the same name.")
    ] = False,
) -> None:
    """Train a byte-level BPE vocabulary on the cleaned Gutenberg + WritingPrompts text."""
    from trainer.tokenizer_cli import run_train_tokenizer

    run_train_tokenizer(name=name, size=size, out=out, force=force)


def _given(ctx: typer.Context, **values) -> dict[str, object]:
    """The options among ``values`` that were typed on the command line, by flag name."""
    given = {}
    for name, value in values.items():
        source = ctx.get_parameter_source(name)  # typer's own copy of click's ParameterSource
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT"):
            flag = "--" + name.replace("_", "-")
            given[{"parent": "--from"}.get(name, flag)] = value
    return given


# Options shared by pretrain and finetune (None = the recipe's value).
MaxSteps = Annotated[int | None, typer.Option("--max-steps", help="Optimizer steps.")]
MaxTokens = Annotated[
    int | None,
    typer.Option("--max-tokens", help="Token budget (with --max-steps the smaller wins)."),
]
TimeBudget = Annotated[
    float | None,
    typer.Option(
        "--time-budget",
        help="Minutes this session may train; a new run fits its steps to it from measured "
        "speed, a resumed one keeps its steps.",
    ),
]
BatchSize = Annotated[
    int | None, typer.Option("--batch-size", help="Sequences per micro-batch (per process).")
]
GradAccum = Annotated[
    int | None, typer.Option("--grad-accum", help="Micro-batches per optimizer step.")
]
LearningRate = Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")]
Compile = Annotated[bool, typer.Option("--compile", help="Use torch.compile (slow start).")]
Resume = Annotated[
    bool, typer.Option("--resume", help="Continue runs/OUT/latest exactly where it stopped.")
]
Seed = Annotated[int, typer.Option("--seed", help="Initialisation and data order.")]
EvalEvery = Annotated[int | None, typer.Option("--eval-every", help="Steps between evals.")]
Dtype = Annotated[
    str | None, typer.Option("--dtype", help="auto, fp32, bf16 or fp16 (auto measures).")
]
Recipe = Annotated[
    str | None,
    typer.Option(
        "--recipe",
        help="storytui or seed (the original recipe); default: seed for a model of the seed "
        "preset (pretrain --preset seed, or finetuning one), else storytui.",
    ),
]
RebuildData = Annotated[
    bool, typer.Option("--rebuild-data", help="Tokenise the training text again.")
]


@train_app.command("pretrain")
def pretrain(
    ctx: typer.Context,
    out: Annotated[str, typer.Option("--out", help="Name of the new model.")],
    preset: Annotated[str, typer.Option(help="tiny, small, colab or seed.")] = "small",
    tokenizer: Annotated[
        str | None,
        typer.Option(
            "--tokenizer",
            help="Vocabulary: a name (bundled, gpt2, or trained with `train tokenizer`) or a "
            ".tiktoken file; default: the preset's.",
        ),
    ] = None,
    recipe: Recipe = None,
    max_steps: MaxSteps = None,
    max_tokens: MaxTokens = None,
    time_budget: TimeBudget = None,
    batch_size: BatchSize = None,
    grad_accum: GradAccum = None,
    lr: LearningRate = None,
    device: Device = "auto",
    compile: Compile = False,
    resume: Resume = False,
    seed: Seed = 1337,
    eval_every: EvalEvery = None,
    dtype: Dtype = None,
    rebuild_data: RebuildData = False,
) -> None:
    """Pretrain a model from scratch on the cleaned Gutenberg books."""
    from trainer import stages

    overrides = dict(
        max_steps=max_steps,
        max_tokens=max_tokens,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        eval_every=eval_every,
        dtype=dtype,
    )
    _check_name(out)
    if resume:
        given = _given(ctx, preset=preset, recipe=recipe, seed=seed)
        given |= _given(ctx, tokenizer=tokenizer, rebuild_data=rebuild_data, **overrides)
        _warn_ignored(out, given)
        spec = stages.resume_spec(
            out, "pretrain", device=device, compile=compile, time_budget_s=_minutes(time_budget)
        )
    else:
        spec = stages.pretrain_spec(
            out,
            preset,
            recipe,
            overrides,
            tokenizer=tokenizer,
            seed=_seed(seed),
            device=device,
            compile=compile,
            time_budget_s=_minutes(time_budget),
            force_shards=rebuild_data,
        )
    _run(spec)


@train_app.command("finetune")
def finetune(
    ctx: typer.Context,
    out: Annotated[str, typer.Option("--out", help="Name of the finetuned model.")],
    parent: Annotated[
        str | None, typer.Option("--from", help="Pretrained model to start from.")
    ] = None,
    mask_prompt: Annotated[
        bool,
        typer.Option(
            "--mask-prompt/--no-mask-prompt",
            help="Train only on stories, not on the prompt header.",
        ),
    ] = True,
    tales: Annotated[
        bool,
        typer.Option(
            "--tales/--no-tales",
            help="Also train on the tales of the story collections among the books, each "
            "titled by its prompt.",
        ),
    ] = False,
    recipe: Recipe = None,
    max_steps: MaxSteps = None,
    max_tokens: MaxTokens = None,
    time_budget: TimeBudget = None,
    batch_size: BatchSize = None,
    grad_accum: GradAccum = None,
    lr: LearningRate = None,
    device: Device = "auto",
    compile: Compile = False,
    resume: Resume = False,
    seed: Seed = 1337,
    eval_every: EvalEvery = None,
    dtype: Dtype = None,
    rebuild_data: RebuildData = False,
) -> None:
    """Finetune a pretrained model on WritingPrompts (prompt → story)."""
    from storytui.errors import StoryError
    from trainer import stages

    overrides = dict(
        max_steps=max_steps,
        max_tokens=max_tokens,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        eval_every=eval_every,
        dtype=dtype,
    )
    _check_name(out)
    if resume:
        given = _given(ctx, parent=parent, recipe=recipe, seed=seed)
        given |= _given(ctx, mask_prompt=mask_prompt, tales=tales, rebuild_data=rebuild_data)
        _warn_ignored(out, given | _given(ctx, **overrides))
        spec = stages.resume_spec(
            out, "finetune", device=device, compile=compile, time_budget_s=_minutes(time_budget)
        )
    else:
        if not parent:
            raise StoryError("finetune needs --from MODEL (a pretrained model to start from)")
        spec = stages.finetune_spec(
            out,
            parent,
            recipe,
            overrides,
            mask_prompt=mask_prompt,
            tales=tales,
            seed=_seed(seed),
            device=device,
            compile=compile,
            time_budget_s=_minutes(time_budget),
            force_shards=rebuild_data,
        )
    _run(spec)


@train_app.command("curves")
def curves(name: Annotated[str, typer.Argument(help="Run (model) name.")]) -> None:
    """Draw a run's train and validation loss against tokens seen."""
    from trainer.curves import print_curves

    print_curves(name)


def _check_name(name: str) -> None:
    """``--out`` becomes a model's directory: one plain name that hides no other model."""
    from storytui import paths
    from storytui.errors import StoryError

    try:
        paths.check_new_model_name(name)
    except StoryError as exc:
        raise StoryError(f"--out: {exc}") from None


def _minutes(value: float | None) -> float | None:
    import math

    from storytui.errors import StoryError

    if value is None:
        return None
    if not (math.isfinite(value) and 0 < value <= MAX_BUDGET_MINUTES):
        raise StoryError(
            f"invalid --time-budget: {value!r} (minutes: more than 0, at most "
            f"{MAX_BUDGET_MINUTES:,})"
        )
    return value * 60.0


MAX_BUDGET_MINUTES = 1_000_000  # about two years


def _seed(value: int) -> int:
    """Checked before any work: a seed torch cannot take used to fail at the first eval."""
    from storytui.errors import StoryError
    from storytui.sampling import SEED_LIMIT

    if not 0 <= value < SEED_LIMIT:
        raise StoryError(f"invalid --seed: {value} (a whole number from 0 to 2**63-1)")
    return value


_NEGATED = {"--mask-prompt": "--no-mask-prompt", "--tales": "--no-tales"}


def _warn_ignored(name: str, given: dict[str, object]) -> None:
    """One line naming the typed options that differ from the saved run's, which resuming keeps."""
    from trainer import stages

    ignored = stages.ignored_on_resume(name, given)
    if ignored:
        shown = [_NEGATED[f] if f in _NEGATED and given[f] is False else f for f in ignored]
        typer.echo(
            f"resuming: the saved run's settings are kept; ignoring {', '.join(shown)}", err=True
        )


# How an interrupted run exits: 128 + the signal (141 is SIGPIPE's: the output went away).
INTERRUPTED_EXIT = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129, "output closed": 141}


def _run(spec) -> None:
    """Train, then say where the model is; an interrupted run exits 128 + its signal."""
    import contextlib
    import os
    import sys

    from trainer.loop import train

    result = train(spec)
    code = INTERRUPTED_EXIT.get(result.stopped_by)
    if int(os.environ.get("RANK", "0")) != 0:
        if code:
            sys.exit(code)
        return
    command = f"storytui train {spec.stage} --out {spec.name} --resume"
    if code:
        closed = result.stopped_by == "output closed"
        stopped = "Stopped: the output closed" if closed else f"Stopped by {result.stopped_by}"
        with contextlib.suppress(OSError):  # after a hang-up there may be no terminal left
            print(
                f"{stopped} at step {result.steps:,}/{result.total_steps:,}; "
                f"saved {result.latest_dir} (continue with `{command}`)",
                file=sys.stderr,
            )
        sys.exit(code)
    if result.stopped_by == "time budget" and result.steps < result.total_steps:
        typer.echo(
            f"Stopped by the time budget at step {result.steps:,}/{result.total_steps:,}; "
            f"model saved to {result.model_dir} (train the remaining steps with `{command}`)"
        )
        return
    val = (
        f", val loss {result.val_loss:.4f}"
        + (f", {result.val_bpb:.4f} bits/byte" if result.val_bpb else "")
        if result.val_loss is not None
        else ""
    )
    typer.echo(
        f"Done: {result.steps:,} steps, {result.tokens_seen:,} tokens{val} "
        f"(stopped: {result.stopped_by}). Model: {result.model_dir}"
    )
