"""Import the original lecture-GPT ``.pt`` checkpoints as storytui seed models.

The original scripts saved ``torch.save`` dicts in three shapes:

* end of pretraining: ``{model_state_dict, vocabulary_size, hyperparameters}``, with
  hyperparameters ``{block_size, n_emb, n_layer, n_head, dropout}``;
* periodic pretraining saves: the same plus ``iteration`` and ``optimizer_state_dict``;
* finetuned: ``{model_state_dict, vocabulary_size}`` (hyperparameters were the defaults).

Files are read with ``torch.load(weights_only=True)``, so a file that would need code to unpickle
is refused rather than run. The sizes are read off the weights themselves (which is what a
finetuned file implies anyway), every tensor's shape is checked, and any hyperparameters the file
states must agree. The result is a normal checkpoint directory (stage ``imported``) in storytui's
seed layout (see ``storytui/seed_model.py``), with the seed prompt template and stop strings
recorded so that ``continue`` and the app lay out prompts the way the model was finetuned.
"""

from __future__ import annotations

import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from storytui import paths
from storytui.checkpoint import CheckpointMeta, load_weights, save_checkpoint
from storytui.errors import StoryError
from storytui.model import PRESETS, ModelConfig
from storytui.seed_model import SeedModel, lecture_to_seed_state
from storytui.story_format import SEED_TEMPLATE
from storytui.tokenizer import load_tokenizer

SEED_TOKENIZER = "gpt2"
DEFAULT_DROPOUT = 0.2
HYPERPARAMETER_NAMES = {  # the original's names -> what they count
    "block_size": "block_size",
    "n_emb": "n_embd",
    "n_layer": "n_layer",
    "n_head": "n_head",
}
# torch.compile and DDP wrap the module; their saves prefix every key.
WRAPPER_PREFIXES = ("_orig_mod.", "module.")


@dataclass
class SeedFile:
    """A lecture checkpoint, read and checked, with its weights already in storytui's layout."""

    path: Path
    config: ModelConfig
    state: dict[str, torch.Tensor]
    source_format: str  # pretrain | pretrain-periodic | finetuned
    iteration: int | None
    dtype: torch.dtype


def read_seed_file(path: Path) -> SeedFile:
    """Load and validate one original ``.pt`` file; every problem becomes one StoryError line."""
    path = Path(path)
    payload = _load_payload(path)
    label = path.name
    if not isinstance(payload, dict) or "model_state_dict" not in payload:
        if isinstance(payload, dict):
            found = f"keys: {_first(sorted(map(str, payload)))}" if payload else "an empty dict"
        else:
            found = f"a {type(payload).__name__}"
        raise StoryError(f"{label} is not a seed model checkpoint: no model_state_dict ({found})")
    lecture = _plain_state(payload["model_state_dict"], label)
    config = _config_from_weights(lecture, label, payload.get("hyperparameters"))
    _check_vocabulary_size(payload.get("vocabulary_size"), config.vocab_size, label)
    _check_lecture_shapes(lecture, config, label)
    if "optimizer_state_dict" in payload or "iteration" in payload:
        source_format = "pretrain-periodic"
    elif "hyperparameters" in payload:
        source_format = "pretrain"
    else:
        source_format = "finetuned"
    iteration = payload.get("iteration")
    return SeedFile(
        path=path,
        config=config,
        state=lecture_to_seed_state(lecture, config.n_layer, config.n_head),
        source_format=source_format,
        iteration=iteration if isinstance(iteration, int) else None,
        dtype=lecture["token_embedding_table.weight"].dtype,
    )


def build_seed_model(seed: SeedFile) -> SeedModel:
    """A float32 ``SeedModel`` holding the file's weights (in eval mode)."""
    model = SeedModel(seed.config)
    load_weights(model, seed.state, seed.path.name)
    return model.eval()


def import_seed_checkpoint(source: Path, name: str, *, force: bool = False) -> Path:
    """Convert ``source`` into the checkpoint ``name`` in the data dir and return its path."""
    paths.check_new_model_name(name)
    target = paths.model_dir(name)
    if target.exists() and not force:
        raise StoryError(f"a model named {name!r} already exists; choose another --name or --force")
    seed = read_seed_file(source)
    tokenizer = load_tokenizer(SEED_TOKENIZER)
    if seed.config.vocab_size != tokenizer.n_vocab:
        raise StoryError(
            f"{seed.path.name}: vocabulary of {seed.config.vocab_size:,} tokens, but seed models "
            f"use the GPT-2 vocabulary ({tokenizer.n_vocab:,} tokens)"
        )
    model = build_seed_model(seed)
    preset = PRESETS["seed"]
    meta = CheckpointMeta(
        model=seed.config,
        tokenizer=tokenizer.name,
        tokenizer_hash=tokenizer.hash,
        preset=preset.name if seed.config == preset.config(tokenizer.n_vocab) else "custom",
        stage="imported",
        steps=seed.iteration or 0,
        template=SEED_TEMPLATE,
        extra={"source": seed.path.name, "source_format": seed.source_format},
    )
    keep_dtype = seed.dtype if seed.dtype != torch.float32 else None  # lossless round trip
    return save_checkpoint(target, model, meta, dtype=keep_dtype)


# ---------------------------------------------------------------------------- reading


def _load_payload(path: Path) -> object:
    """``torch.load`` restricted to tensors and plain containers, with readable failures."""
    if not path.is_file():
        raise StoryError(f"{path} is not a file")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before failing
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        needed = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if needed:
            raise StoryError(
                f"{path.name} needs code to load ({needed.group(1)}); only plain tensors and "
                "containers are read, never pickled code: re-save it with "
                "torch.save({'model_state_dict': model.state_dict(), ...})"
            ) from exc
        raise StoryError(f"{path.name} is not a PyTorch checkpoint") from exc
    except Exception as exc:  # garbage can fail the unpickler anywhere (IndexError, ...)
        if "zip archive" in str(exc):
            raise StoryError(f"{path.name} is a corrupt or truncated PyTorch checkpoint") from exc
        raise StoryError(f"{path.name} is not a PyTorch checkpoint") from exc


def _plain_state(state: object, label: str) -> dict[str, torch.Tensor]:
    """The state dict with string keys and tensor values, wrapper prefixes removed."""
    if not isinstance(state, dict) or not state:
        raise StoryError(f"{label}: model_state_dict is not a non-empty dict of tensors")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise StoryError(f"{label}: model_state_dict entry {key!r} is not a named tensor")
    for prefix in WRAPPER_PREFIXES:
        if all(key.startswith(prefix) for key in state):
            state = {key.removeprefix(prefix): value for key, value in state.items()}
    return state


def _config_from_weights(
    lecture: dict[str, torch.Tensor], label: str, hyperparameters: object
) -> ModelConfig:
    """Sizes read off the weights, checked against any hyperparameters the file states."""
    for key in ("token_embedding_table.weight", "position_embedding_table.weight"):
        if key not in lecture:
            raise StoryError(f"{label}: model_state_dict has no {key}; not a seed model")
        if lecture[key].dim() != 2:
            raise StoryError(f"{label}: {key} has shape {tuple(lecture[key].shape)}, expected 2-D")
    vocab_size, n_embd = lecture["token_embedding_table.weight"].shape
    block_size = lecture["position_embedding_table.weight"].shape[0]
    n_layer = _count_indices(lecture, r"blocks\.(\d+)\.")
    n_head = _count_indices(lecture, r"blocks\.0\.sa\.heads\.(\d+)\.")
    if n_layer == 0 or n_head == 0:
        raise StoryError(f"{label}: model_state_dict has no attention blocks; not a seed model")
    if n_embd % n_head:
        raise StoryError(f"{label}: embedding width {n_embd} is not divisible by {n_head} heads")
    fc = lecture.get("blocks.0.ffwd.net.0.weight")
    mlp_hidden = fc.shape[0] if fc is not None and fc.dim() == 2 else 4 * n_embd
    found = {"block_size": block_size, "n_embd": n_embd, "n_layer": n_layer, "n_head": n_head}
    dropout = DEFAULT_DROPOUT
    if hyperparameters is not None:
        if not isinstance(hyperparameters, dict):
            raise StoryError(f"{label}: hyperparameters is not a dict")
        for name, field in HYPERPARAMETER_NAMES.items():
            stated = hyperparameters.get(name)
            if stated is not None and stated != found[field]:
                raise StoryError(
                    f"{label}: hyperparameters say {name}={stated!r}, "
                    f"but the weights have {name}={found[field]}"
                )
        stated_dropout = hyperparameters.get("dropout", DEFAULT_DROPOUT)
        if not isinstance(stated_dropout, (int, float)) or not 0 <= stated_dropout < 1:
            raise StoryError(f"{label}: hyperparameters dropout={stated_dropout!r} is not in [0,1)")
        dropout = float(stated_dropout)
    return ModelConfig(
        vocab_size=int(vocab_size),
        mlp_hidden=int(mlp_hidden),
        dropout=dropout,
        arch="seed",
        **{field: int(value) for field, value in found.items()},
    )


def _count_indices(lecture: dict[str, torch.Tensor], pattern: str) -> int:
    """How many consecutive indices 0, 1, ... ``pattern``'s group takes in the keys."""
    seen = {int(m.group(1)) for key in lecture if (m := re.match(pattern, key))}
    count = 0
    while count in seen:
        count += 1
    return count


def _check_vocabulary_size(stated: object, found: int, label: str) -> None:
    """A stated ``vocabulary_size`` must be the embedding's; an absent one is read off it."""
    if stated is not None and stated != found:
        raise StoryError(
            f"{label}: vocabulary_size is {stated!r}, but the embedding has {found:,} rows"
        )


def lecture_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor the original module tree holds for ``config`` (``tril`` buffers included)."""
    C, H, hs, block = config.n_embd, config.n_head, config.head_dim, config.block_size
    shapes: dict[str, tuple[int, ...]] = {
        "token_embedding_table.weight": (config.vocab_size, C),
        "position_embedding_table.weight": (block, C),
        "ln_f.weight": (C,),
        "ln_f.bias": (C,),
        "lm_head.weight": (config.vocab_size, C),
        "lm_head.bias": (config.vocab_size,),
    }
    for i in range(config.n_layer):
        b = f"blocks.{i}."
        for h in range(H):
            for part in ("key", "query", "value"):
                shapes[f"{b}sa.heads.{h}.{part}.weight"] = (hs, C)
            shapes[f"{b}sa.heads.{h}.tril"] = (block, block)
        shapes.update(
            {
                f"{b}sa.proj.weight": (C, C),
                f"{b}sa.proj.bias": (C,),
                f"{b}ffwd.net.0.weight": (config.mlp_hidden, C),
                f"{b}ffwd.net.0.bias": (config.mlp_hidden,),
                f"{b}ffwd.net.2.weight": (C, config.mlp_hidden),
                f"{b}ffwd.net.2.bias": (C,),
            }
        )
        for norm in ("ln1", "ln2"):
            shapes[f"{b}{norm}.weight"] = (C,)
            shapes[f"{b}{norm}.bias"] = (C,)
    return shapes


def _check_lecture_shapes(
    lecture: dict[str, torch.Tensor], config: ModelConfig, label: str
) -> None:
    """Every expected tensor present with its shape; ``tril`` may be absent but not altered."""
    expected = lecture_shapes(config)
    missing = [k for k in expected if k not in lecture and not k.endswith(".tril")]
    unexpected = [k for k in lecture if k not in expected]
    if missing:
        raise StoryError(f"{label}: model_state_dict lacks {_first(missing)}")
    if unexpected:
        raise StoryError(f"{label}: model_state_dict has unexpected {_first(unexpected)}")
    causal = torch.ones(config.block_size, config.block_size).tril()
    for key, tensor in lecture.items():
        if tuple(tensor.shape) != expected[key]:
            raise StoryError(
                f"{label}: {key} has shape {tuple(tensor.shape)}, expected {expected[key]} "
                f"for width {config.n_embd}, {config.n_head} heads, context {config.block_size}"
            )
        if key.endswith(".tril"):
            if not torch.equal(tensor.float(), causal):
                raise StoryError(f"{label}: {key} is not the causal mask")
        elif not tensor.is_floating_point():
            raise StoryError(f"{label}: {key} holds {tensor.dtype}, not floating-point weights")


def _first(keys: list[str]) -> str:
    more = f" (and {len(keys) - 3} more)" if len(keys) > 3 else ""
    return ", ".join(keys[:3]) + more


def print_import_summary(directory: Path) -> None:
    """One line for the CLI: what was imported, and how to use it."""
    from storytui.checkpoint import read_meta

    meta = read_meta(directory)
    print(
        f"Imported {meta.extra.get('source', '?')} ({meta.extra.get('source_format', '?')}, "
        f"{meta.n_params:,} parameters) as {directory.name} in {directory}; "
        f"try `storytui continue FILE --model {directory.name}`"
    )
