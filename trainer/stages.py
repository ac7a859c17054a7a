"""Recipes: the hyperparameters of each stage and preset, and how a run is assembled.

Two recipes train the same model code with the same loop:

* ``storytui`` — AdamW with decoupled weight decay on 2-D weights, betas (0.9, 0.95), linear
  warmup then cosine decay to 10% of the peak, gradient clipping at 1.0, mixed precision;
* ``seed`` — the original small project's recipe, kept so the two can be compared at equal
  compute: Adam without weight decay, lr 1e-4 cosine to 1e-5 over 10,000 steps of 16×256
  tokens, fp32, no warmup, no clipping (finetune: 10,000 steps of 8×256 at 8e-5 → 8e-6).

A pretrain run builds shards from the cleaned Gutenberg books; a finetune run starts from a
checkpoint, keeps its tokenizer and story template, and formats WritingPrompts pairs with
``storytui.story_format`` so the app later shows the model exactly the layout it learned.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from storytui.errors import StoryError

if TYPE_CHECKING:
    import torch

    from storytui.model import ModelConfig
    from storytui.story_format import StoryTemplate
    from storytui.tokenizer import Tokenizer

STAGES = ("pretrain", "finetune")
RECIPES = ("storytui", "seed")
DEFAULT_SEED = 1337


@dataclass(frozen=True)
class Hyperparameters:
    """Everything the loop needs to know about optimisation; saved with each run for resume."""

    batch_size: int  # sequences per micro-batch, per process
    grad_accum: int  # micro-batches per optimizer step
    lr: float  # peak learning rate
    max_steps: int
    max_tokens: int | None = None  # a token budget; the smaller of the two wins
    block_size: int | None = None  # tokens per sequence; None = the model's context
    min_lr_ratio: float = 0.1  # cosine ends at this fraction of the peak
    warmup_steps: int = 0
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0
    dtype: str = "auto"
    eval_every: int = 250
    eval_batches: int = 20
    log_every: int = 10

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Hyperparameters:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["betas"] = tuple(values.get("betas", (0.9, 0.95)))
        return cls(**values)

    def validate(self) -> Hyperparameters:
        checks = [
            (self.batch_size >= 1, "batch-size", ">= 1"),
            (self.grad_accum >= 1, "grad-accum", ">= 1"),
            (self.lr > 0 and math.isfinite(self.lr), "lr", "> 0"),
            (self.max_steps >= 1, "max-steps", ">= 1"),
            (self.max_tokens is None or self.max_tokens >= 1, "max-tokens", ">= 1"),
            (self.block_size is None or self.block_size >= 2, "block size", ">= 2"),
            (self.eval_every >= 1, "eval-every", ">= 1"),
        ]
        for ok, name, rule in checks:
            if not ok:
                value = getattr(self, name.replace("-", "_").replace(" ", "_"))
                raise StoryError(f"invalid {name}: {value!r} (must be {rule})")
        return self


def _storytui(batch: int, accum: int, lr: float, steps: int, warmup: int, **kw) -> Hyperparameters:
    return Hyperparameters(
        batch_size=batch, grad_accum=accum, lr=lr, max_steps=steps, warmup_steps=warmup, **kw
    )


# Token budgets: `small` is sized for a few hours on a laptop CPU; `colab` for one free Colab
# T4 session (see notebooks/colab.ipynb for the arithmetic); `tiny` for tests and smoke runs.
STORYTUI_DEFAULTS: dict[tuple[str, str], Hyperparameters] = {
    ("pretrain", "tiny"): _storytui(8, 1, 3e-3, 300, 20, eval_every=100, eval_batches=4),
    ("pretrain", "small"): _storytui(8, 2, 1e-3, 1200, 100, eval_every=200, eval_batches=16),
    ("pretrain", "colab"): _storytui(16, 4, 6e-4, 3000, 200, eval_every=250, eval_batches=40),
    ("pretrain", "seed"): _storytui(32, 2, 6e-4, 3000, 150, eval_every=500, eval_batches=20),
    ("finetune", "tiny"): _storytui(8, 1, 1e-3, 100, 10, eval_every=50, eval_batches=4),
    ("finetune", "small"): _storytui(8, 1, 3e-4, 1000, 50, eval_every=200, eval_batches=16),
    ("finetune", "colab"): _storytui(8, 4, 2e-4, 1500, 50, eval_every=250, eval_batches=40),
    ("finetune", "seed"): _storytui(16, 1, 1e-4, 2000, 50, eval_every=250, eval_batches=20),
}

_SEED_COMMON = dict(
    block_size=256,
    min_lr_ratio=0.1,
    warmup_steps=0,
    weight_decay=0.0,
    betas=(0.9, 0.999),
    grad_clip=None,
    dtype="fp32",
    eval_every=500,
    eval_batches=20,
)
SEED_DEFAULTS: dict[str, Hyperparameters] = {
    "pretrain": Hyperparameters(
        batch_size=16, grad_accum=1, lr=1e-4, max_steps=10_000, **_SEED_COMMON
    ),
    "finetune": Hyperparameters(
        batch_size=8, grad_accum=1, lr=8e-5, max_steps=10_000, **_SEED_COMMON
    ),
}


def default_recipe(preset: str) -> str:
    """The seed preset trains with the seed recipe unless told otherwise."""
    return "seed" if preset == "seed" else "storytui"


def default_hyperparameters(stage: str, preset: str, recipe: str) -> Hyperparameters:
    from storytui.model import PRESETS

    if stage not in STAGES:
        raise StoryError(f"unknown stage {stage!r} (choose {', '.join(STAGES)})")
    if recipe not in RECIPES:
        raise StoryError(f"unknown recipe {recipe!r} (choose {', '.join(RECIPES)})")
    if preset not in PRESETS:
        raise StoryError(f"unknown preset {preset!r} (choose {', '.join(PRESETS)})")
    if recipe == "seed":
        return SEED_DEFAULTS[stage]
    return STORYTUI_DEFAULTS[(stage, preset)]


def with_overrides(hp: Hyperparameters, **overrides: Any) -> Hyperparameters:
    """Apply the command line's explicit choices (None = keep the recipe's value).

    ``max_steps`` and ``max_tokens`` replace the recipe's length; given together, the smaller
    budget wins. The warmup shrinks with a shortened run so it never exceeds a tenth of it.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if "max_steps" in given or "max_tokens" in given:
        given.setdefault("max_steps", 10**12 if "max_tokens" in given else hp.max_steps)
        given.setdefault("max_tokens", None)
    hp = replace(hp, **given)
    if "max_steps" in given and hp.max_steps < 10 * hp.warmup_steps:
        hp = replace(hp, warmup_steps=hp.max_steps // 10)
    return hp.validate()


def total_steps(hp: Hyperparameters, tokens_per_step: int) -> int:
    """Optimizer steps of a run: its step count, cut to its token budget when that is smaller."""
    steps = hp.max_steps
    if hp.max_tokens is not None:
        steps = min(steps, max(1, math.ceil(hp.max_tokens / tokens_per_step)))
    return steps


def lr_at(step: int, hp: Hyperparameters, steps: int) -> float:
    """Linear warmup to the peak, then cosine decay to ``min_lr_ratio`` of it at ``steps``."""
    warmup = min(hp.warmup_steps, steps // 10) if hp.warmup_steps else 0
    if step < warmup:
        return hp.lr * (step + 1) / warmup
    span = max(1, steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    floor = hp.lr * hp.min_lr_ratio
    return floor + 0.5 * (hp.lr - floor) * (1.0 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------- assembling runs


@dataclass
class RunSpec:
    """One training run, ready for ``trainer.loop.train``."""

    name: str
    stage: str
    preset: str
    recipe: str
    model_config: ModelConfig
    tokenizer: Tokenizer
    data: Any  # trainer.dataset.ShardSet: get_batch / iter_eval_batches
    hp: Hyperparameters
    template: StoryTemplate
    parent: str | None = None
    init_state: dict[str, torch.Tensor] | None = None  # weights to start from (finetune)
    seed: int = DEFAULT_SEED
    device: str = "auto"
    compile: bool = False
    resume: bool = False
    time_budget_s: float | None = None
    sample_prompt: str = ""  # finetune: a writing prompt for the eval sample
    sample_text: str = "The"  # pretrain: the opening the eval sample continues
    sample_tokens: int = 48  # length of the eval sample (0 = no sample)
    options: dict[str, Any] = field(default_factory=dict)  # recorded in checkpoint meta
    halt_after_steps: int | None = None  # stop as if interrupted (the schedule stays whole)


SAMPLE_OPENING = "It was late in the evening when"
SAMPLE_PROMPT = "A lighthouse keeper finds a letter addressed to her, dated fifty years from now."


def template_for(preset: str) -> StoryTemplate:
    """New models of the seed architecture use the seed layout; all others storytui's."""
    from storytui.model import PRESETS
    from storytui.story_format import SEED_TEMPLATE, StoryTemplate

    return SEED_TEMPLATE if PRESETS[preset].arch == "seed" else StoryTemplate()


def pretrain_spec(
    name: str,
    preset: str,
    recipe: str | None,
    overrides: dict[str, Any],
    *,
    tokenizer: str | None = None,
    seed: int = DEFAULT_SEED,
    device: str = "auto",
    compile: bool = False,
    time_budget_s: float | None = None,
    force_shards: bool = False,
) -> RunSpec:
    """A fresh pretraining run of ``preset`` on the cleaned Gutenberg books, with the preset's
    vocabulary or the one ``tokenizer`` names (see ``storytui.tokenizer.choose_tokenizer``)."""
    from storytui.model import PRESETS
    from storytui.tokenizer import choose_tokenizer, load_tokenizer

    recipe = recipe or default_recipe(preset)
    hp = with_overrides(default_hyperparameters("pretrain", preset, recipe), **overrides)
    _check_device_and_dtype(device, hp.dtype)
    if tokenizer:
        vocabulary = choose_tokenizer(tokenizer)
    else:
        vocabulary = load_tokenizer(PRESETS[preset].tokenizer)
    data = pretrain_shards(vocabulary, force=force_shards)
    return RunSpec(
        name=name,
        stage="pretrain",
        preset=preset,
        recipe=recipe,
        model_config=PRESETS[preset].config(vocabulary.n_vocab),
        tokenizer=vocabulary,
        data=data,
        hp=hp,
        template=template_for(preset),
        seed=seed,
        device=device,
        compile=compile,
        time_budget_s=time_budget_s,
        sample_text=SAMPLE_OPENING,
    )


def finetune_spec(
    name: str,
    parent: str,
    recipe: str | None,
    overrides: dict[str, Any],
    *,
    mask_prompt: bool = True,
    tales: bool = False,
    seed: int = DEFAULT_SEED,
    device: str = "auto",
    compile: bool = False,
    time_budget_s: float | None = None,
    force_shards: bool = False,
) -> RunSpec:
    """Finetune checkpoint ``parent`` on WritingPrompts, keeping its tokenizer and template."""
    from storytui.checkpoint import load_checkpoint, resolve_model

    checkpoint = load_checkpoint(resolve_model(parent))
    preset = checkpoint.meta.preset
    if preset not in _known_presets():
        preset = "seed" if checkpoint.meta.model.arch == "seed" else "small"
    recipe = recipe or default_recipe(preset)
    hp = with_overrides(default_hyperparameters("finetune", preset, recipe), **overrides)
    _check_device_and_dtype(device, hp.dtype)
    template = checkpoint.meta.template
    data = finetune_shards(
        checkpoint.tokenizer, template, mask_prompt, tales=tales, force=force_shards
    )
    return RunSpec(
        name=name,
        stage="finetune",
        preset=checkpoint.meta.preset,
        recipe=recipe,
        model_config=checkpoint.meta.model,
        tokenizer=checkpoint.tokenizer,
        data=data,
        hp=hp,
        template=template,
        parent=checkpoint.name,
        init_state={k: v.detach().clone() for k, v in checkpoint.model.state_dict().items()},
        seed=seed,
        device=device,
        compile=compile,
        time_budget_s=time_budget_s,
        sample_prompt=SAMPLE_PROMPT,
        options={"mask_prompt": mask_prompt, "tales": tales},
    )


def _check_device_and_dtype(device: str, dtype: str) -> None:
    """Checked before the shards are built (minutes of tokenising on real data), not at the
    first step."""
    from trainer.distributed import local_rank
    from trainer.throughput import check_precision, resolve_device

    resolved = resolve_device(device, local_rank())  # this rank's card, not card 0
    if dtype != "auto":
        check_precision(dtype, resolved)


def resume_spec(
    name: str,
    stage: str,
    *,
    device: str = "auto",
    compile: bool = False,
    time_budget_s: float | None = None,
) -> RunSpec:
    """The run saved in ``runs/NAME/latest``, rebuilt exactly as it started (same data, same hp).
    ``time_budget_s`` limits this session only (default: the budget the run started with); the
    steps stay those the run planned."""
    from storytui import paths
    from storytui.checkpoint import checkpoint_tokenizer, read_meta
    from trainer.run_state import LATEST

    latest = paths.run_dir(name) / LATEST
    if not (latest / "config.json").is_file():
        if paths.run_dir(name).is_dir():
            raise StoryError(
                f"run {name!r} stopped before it saved a resumable state ({latest} does not "
                f"exist), so there is nothing to resume; start it again without --resume: "
                f"`storytui train {stage} --out {name} …`"
            )
        raise StoryError(f"no saved run {name!r} to resume (looked in {latest})")
    meta = read_meta(latest)
    run = meta.extra.get("run", {})
    if meta.stage != stage:
        raise StoryError(
            f"run {name!r} is a {meta.stage} run; resume it with `storytui train {meta.stage} "
            f"--out {name} --resume`"
        )
    total = run.get("total_steps")
    if isinstance(total, int) and meta.steps >= total:
        raise StoryError(
            f"run {name!r} already finished ({meta.steps:,} of {total:,} steps): nothing to "
            f"resume; its model is {paths.model_dir(name)}"
        )
    tokenizer = checkpoint_tokenizer(latest, meta)
    options = run.get("options", {})
    trained_on = run.get("data_fingerprint") or ""
    if stage == "pretrain":
        data = pretrain_shards(tokenizer, resume_from=trained_on)
        sample = {"sample_text": SAMPLE_OPENING}
    else:
        mask = options.get("mask_prompt", True)
        tales = options.get("tales", False)
        data = finetune_shards(tokenizer, meta.template, mask, tales=tales, resume_from=trained_on)
        sample = {"sample_prompt": SAMPLE_PROMPT}
    return RunSpec(
        name=name,
        stage=stage,
        preset=meta.preset,
        recipe=run.get("recipe", "storytui"),
        model_config=meta.model,
        tokenizer=tokenizer,
        data=data,
        hp=Hyperparameters.from_json(run["hp"]),
        template=meta.template,
        parent=meta.parent,
        seed=int(run.get("seed", DEFAULT_SEED)),
        device=device,
        compile=compile,
        resume=True,
        time_budget_s=time_budget_s if time_budget_s is not None else run.get("time_budget_s"),
        options=options,
        **sample,
    )


def ignored_on_resume(name: str, requested: dict[str, Any]) -> list[str]:
    """The options in ``requested`` (flag → value typed) that differ from what run ``name``
    saved, so resuming it ignores them; ``[]`` when there is no saved run to compare with
    (``resume_spec`` says so)."""
    from storytui import paths
    from storytui.checkpoint import read_meta
    from trainer.run_state import LATEST

    try:
        meta = read_meta(paths.run_dir(name) / LATEST)
    except (StoryError, OSError):
        return []
    run = meta.extra.get("run", {}) if isinstance(meta.extra, dict) else {}
    hp = run.get("hp", {})
    options = run.get("options", {})
    saved: dict[str, Any] = {
        "--preset": meta.preset,
        "--recipe": run.get("recipe", "storytui"),
        "--seed": run.get("seed", DEFAULT_SEED),
        "--from": meta.parent,
        "--mask-prompt": options.get("mask_prompt", True),
        "--tales": options.get("tales", False),
        "--rebuild-data": False,  # a resumed run reads the very shards it started with
    }
    for flag in ("max_steps", "max_tokens", "batch_size", "grad_accum", "lr", "eval_every"):
        saved["--" + flag.replace("_", "-")] = hp.get(flag)
    saved["--dtype"] = hp.get("dtype")
    return [flag for flag, value in requested.items() if not _same(value, saved.get(flag))]


def _same(given: Any, saved: Any) -> bool:
    if isinstance(given, float) and isinstance(saved, int | float):
        return math.isclose(given, saved, rel_tol=1e-9)
    return given == saved


def _known_presets() -> set[str]:
    from storytui.model import PRESETS

    return set(PRESETS)


# ---------------------------------------------------------------------------- data


def pretrain_shards(tokenizer: Tokenizer, *, resume_from: str | None = None, force: bool = False):
    """Token shards of the cleaned books, built once per tokenizer and text, then reused.

    ``resume_from``: the fingerprint of the text a resumed run trained on (see
    ``_check_resumable``).
    """
    from trainer import dataset

    name = f"pretrain-{_vocabulary_key(tokenizer)}"
    if resume_from is not None and (shards := _reusable(name, tokenizer, resume_from)):
        return shards
    documents = dataset.pretrain_documents()
    _check_resumable(documents, resume_from)
    return dataset.build_shards(name, documents, tokenizer, force=force)


def finetune_shards(
    tokenizer: Tokenizer,
    template: StoryTemplate,
    mask_prompt: bool,
    *,
    tales: bool = False,
    resume_from: str | None = None,
    force: bool = False,
):
    """Token shards of WritingPrompts pairs laid out by the checkpoint's story template.

    With ``mask_prompt`` the header (prompt, memory) is conditioning only; without, the model
    also learns to write the header. With ``tales`` the training split also holds the
    collections' tales (see ``trainer.sources.tales``).
    """
    import hashlib
    import json

    from trainer import dataset

    layout = json.dumps(template.to_json(), sort_keys=True).encode()
    digest = hashlib.sha256(layout).hexdigest()[:8]
    name = f"finetune-{_vocabulary_key(tokenizer)}-{digest}-{'masked' if mask_prompt else 'full'}"
    if tales:
        name += "-tales"
    if resume_from is not None and (shards := _reusable(name, tokenizer, resume_from)):
        return shards
    documents = dataset.finetune_documents(template, tales=tales)
    if not mask_prompt:
        documents = {
            split: [("", header + body) for header, body in docs]
            for split, docs in documents.items()
        }
    _check_resumable(documents, resume_from)
    return dataset.build_shards(name, documents, tokenizer, force=force)


def _vocabulary_key(tokenizer: Tokenizer) -> str:
    """How shard names tell vocabularies apart: by name, and for one of the user's (which may
    be retrained under the same name) by its hash too, so each version keeps its own shards."""
    if tokenizer.bundled:
        return tokenizer.name
    return f"{tokenizer.name}-{tokenizer.hash.partition(':')[2][:8]}"


def _reusable(name: str, tokenizer: Tokenizer, trained_on: str):
    """The shards a resumed run trained on, when they are still there, made with its
    vocabulary and from its text (``trained_on``, the fingerprint it saved; ``""`` for a run
    saved before runs recorded it, which takes the shards as they are). Else None."""
    from storytui import paths
    from trainer import dataset

    if not (paths.shards_dir(name) / "meta.json").is_file():
        return None
    shards = dataset.ShardSet.load(name)
    if not shards.matches(tokenizer):
        return None
    return shards if trained_on in ("", shards.meta.get("fingerprint")) else None


def _check_resumable(documents, trained_on: str | None) -> None:
    """A resumed run continues mid-way through its data: it may rebuild the shards only from
    the very text it started with. Another run that rebuilt them from newer text (after a
    ``data download``) leaves nothing this run can resume on without a silent change."""
    from trainer import dataset

    if trained_on and dataset.fingerprint_documents(documents) != trained_on:
        raise StoryError(
            "cannot resume: the text this run trained on has changed since it started (its "
            "shards were rebuilt from other text, e.g. after `storytui data download`); start "
            "it again without --resume, or put back the text it used"
        )
