"""Checkpoints: a directory with ``model.safetensors`` (weights only) and ``config.json``, plus
``tokenizer.tiktoken`` when the model was trained with a vocabulary that does not ship with
storytui (one the user trained): a checkpoint then still loads on another machine, or after
that vocabulary was retrained.

Weights are data, never code, so loading cannot execute anything. Writes go to a temp directory
that takes the checkpoint's place in one step (``atomic.atomic_directory``), so a kill mid-save
leaves the previous checkpoint, whole and under its name. Loading
checks the JSON, the architecture, the vocabulary hash and every tensor's shape, and turns each
problem into one clear line.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from storytui import paths
from storytui.atomic import atomic_directory, restore_replaced
from storytui.errors import StoryError
from storytui.model import ModelConfig, build_model
from storytui.story_format import StoryTemplate
from storytui.tokenizer import Tokenizer, load_tokenizer, read_tokenizer_file, write_ranks
from storytui.weight_checks import weights_problem

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
VOCABULARY_FILE = "tokenizer.tiktoken"


@dataclass
class CheckpointMeta:
    """Everything in config.json besides the weights."""

    model: ModelConfig
    tokenizer: str
    tokenizer_hash: str
    preset: str = "custom"
    stage: str = "pretrain"  # pretrain | finetune | imported
    parent: str | None = None
    steps: int = 0
    tokens_seen: int = 0
    val_loss: float | None = None
    val_bpb: float | None = None
    created: str = field(
        default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    )
    template: StoryTemplate = field(default_factory=StoryTemplate)
    weights_dtype: str = "float32"
    n_params: int = 0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "model": self.model.to_json(),
            "tokenizer": {"name": self.tokenizer, "hash": self.tokenizer_hash},
            "preset": self.preset,
            "stage": self.stage,
            "parent": self.parent,
            "steps": self.steps,
            "tokens_seen": self.tokens_seen,
            "val_loss": self.val_loss,
            "val_bpb": self.val_bpb,
            "created": self.created,
            "template": self.template.to_json(),
            "weights_dtype": self.weights_dtype,
            "n_params": self.n_params,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict) -> CheckpointMeta:
        if not isinstance(data, dict):
            raise ValueError("it must hold one JSON object")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"format_version {version!r} is not supported (expected {FORMAT_VERSION})"
            )
        tokenizer = data["tokenizer"]
        if not isinstance(tokenizer, dict) or not all(
            isinstance(tokenizer.get(key), str) for key in ("name", "hash")
        ):
            raise ValueError("tokenizer needs a name and a hash")
        for key, kind in (("preset", str), ("stage", str), ("created", str), ("extra", dict)):
            if key in data and not isinstance(data[key], kind):
                raise ValueError(f"{key} must be a {kind.__name__}, not {data[key]!r}")
        for key in ("val_loss", "val_bpb"):
            if not isinstance(data.get(key), int | float | None) or isinstance(data.get(key), bool):
                raise ValueError(f"{key} must be a number, not {data[key]!r}")
        return cls(
            model=ModelConfig.from_json(data["model"]),
            tokenizer=tokenizer["name"],
            tokenizer_hash=tokenizer["hash"],
            preset=data.get("preset", "custom"),
            stage=data.get("stage", "pretrain"),
            parent=data.get("parent"),
            steps=int(data.get("steps", 0)),
            tokens_seen=int(data.get("tokens_seen", 0)),
            val_loss=data.get("val_loss"),
            val_bpb=data.get("val_bpb"),
            created=data.get("created", ""),
            template=StoryTemplate.from_json(data.get("template")),
            weights_dtype=data.get("weights_dtype", "float32"),
            n_params=int(data.get("n_params", 0)),
            extra=data.get("extra", {}),
        )


@dataclass
class Checkpoint:
    """A loaded, validated checkpoint ready for generation or further training."""

    path: Path
    name: str
    meta: CheckpointMeta
    model: nn.Module
    tokenizer: Tokenizer


def _unique_state(model: nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """State dict without tied duplicates (safetensors refuses shared storage)."""
    state: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in seen:
            continue
        seen.add(pointer)
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[name] = tensor.contiguous()
    return state


def save_checkpoint(
    directory: Path,
    model: nn.Module,
    meta: CheckpointMeta,
    *,
    dtype: torch.dtype | None = None,
    tokenizer: Tokenizer | None = None,
) -> Path:
    """Write weights and config atomically; ``dtype`` (e.g. float16) shrinks shipped models.

    ``tokenizer`` (the one ``meta`` names) is copied in unless every install has it."""
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    model = getattr(model, "module", model)  # unwrap DDP
    state = _unique_state(model, dtype)
    meta.n_params = sum(p.numel() for p in model.parameters())
    if dtype is not None:
        meta.weights_dtype = str(dtype).removeprefix("torch.")
    with atomic_directory(Path(directory)) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(meta.to_json(), indent=2) + "\n")
        if tokenizer is not None and not tokenizer.bundled:
            write_ranks(tmp / VOCABULARY_FILE, tokenizer.ranks)
    return Path(directory)


def checkpoint_label(directory: Path) -> str:
    """How messages name a checkpoint: by its model name when it lives in ``models/`` (what
    the writer types after --model), by its path anywhere else."""
    directory = Path(directory)
    if directory.parent == paths.models_dir():
        return directory.name
    if len(directory.parts) == 1 and not directory.is_absolute():  # `good`, a folder here:
        return f".{os.sep}{directory}"  # not to be taken for the data dir's model `good`
    return str(directory)


def _require_file(directory: Path, name: str) -> Path:
    """``directory/name``, or one line on why it cannot be read: missing, a folder, or not
    readable (permissions), each said as such instead of as a missing or corrupt file."""
    path = directory / name
    label = checkpoint_label(directory)
    try:
        if path.is_dir():
            raise StoryError(f"checkpoint {label}: {name} is a folder, not a file")
        with open(path, "rb"):
            pass
    except FileNotFoundError as exc:
        raise StoryError(f"checkpoint {label} has no {name}") from exc
    except OSError as exc:
        raise StoryError(f"checkpoint {label}: cannot read {name}: {exc.strerror or exc}") from exc
    return path


def read_meta(directory: Path) -> CheckpointMeta:
    """Read and validate config.json only (fast: used for listings)."""
    directory = Path(directory)
    try:
        is_dir = directory.is_dir()
    except OSError as exc:  # a folder the user may not look into
        label = checkpoint_label(directory)
        raise StoryError(f"checkpoint {label}: cannot read it: {exc.strerror or exc}") from exc
    if not is_dir:
        raise StoryError(f"{directory} is not a checkpoint directory")
    config_path = _require_file(directory, CONFIG_FILE)
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoryError(
            f"checkpoint {checkpoint_label(directory)}: {CONFIG_FILE} is not valid JSON ({exc})"
        ) from exc
    try:
        return CheckpointMeta.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        label = checkpoint_label(directory)
        raise StoryError(f"checkpoint {label}: {CONFIG_FILE} is malformed ({detail})") from exc


def load_checkpoint(directory: Path, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint, refusing any mismatch with one clear line."""
    directory = Path(directory)
    meta = read_meta(directory)
    label = checkpoint_label(directory)
    tokenizer = checkpoint_tokenizer(directory, meta)
    if meta.model.vocab_size < tokenizer.n_vocab:
        raise StoryError(
            f"checkpoint {label}: model vocabulary {meta.model.vocab_size} is smaller "
            f"than tokenizer {meta.tokenizer} ({tokenizer.n_vocab})"
        )
    weights = check_weight_shapes(directory, meta)  # before anything is allocated for them
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise StoryError(
            f"checkpoint {label}: {WEIGHTS_FILE} is corrupt or truncated ({exc})"
        ) from exc
    try:
        model = build_model(meta.model, initialize=False)  # load_weights fills every tensor
    except (RuntimeError, MemoryError) as exc:  # e.g. a huge context's rotary tables
        raise StoryError(
            f"checkpoint {label}: too large to load here ({_first_line(exc)})"
        ) from exc
    load_weights(model, state, label)
    model.to(device).eval()
    return Checkpoint(
        path=directory, name=directory.name, meta=meta, model=model, tokenizer=tokenizer
    )


def check_checkpoint(directory: Path, meta: CheckpointMeta | None = None) -> CheckpointMeta:
    """Everything ``load_checkpoint`` checks that needs no tensor data (the config, the
    vocabulary, the weights file's header against the config): cheap enough for ``models
    info``, and what a copy that was cut short or edited by hand fails. ``meta``: the config
    the caller already read."""
    meta = meta or read_meta(directory)
    checkpoint_tokenizer(directory, meta)
    check_weight_shapes(directory, meta)
    return meta


def check_weight_shapes(directory: Path, meta: CheckpointMeta) -> Path:
    """The weights file, after its header (no tensor data read) was checked against the
    shapes the config implies (built on the meta device, so a hand-edited size cannot make
    this allocate gigabytes): the file is whole and holds exactly the config's tensors."""
    directory = Path(directory)
    label = checkpoint_label(directory)
    weights = _require_file(directory, WEIGHTS_FILE)
    try:
        with safe_open(str(weights), framework="pt") as handle:
            names = handle.keys()  # a safe_open handle is not iterable itself
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in names}
    except (SafetensorError, OSError, ValueError) as exc:
        raise StoryError(
            f"checkpoint {label}: {WEIGHTS_FILE} is corrupt or truncated ({_first_line(exc)})"
        ) from exc
    try:
        with torch.device("meta"):  # no random init: on the meta device that imports dynamo (1.6 s)
            model = build_model(meta.model, initialize=False)
    except ValueError as exc:
        raise StoryError(f"checkpoint {label}: {exc}") from exc
    _check_names_and_shapes(model, shapes, label)
    return weights


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def checkpoint_tokenizer(directory: Path, meta: CheckpointMeta) -> Tokenizer:
    """The vocabulary a checkpoint was trained with: its own copy, else the installed one of
    that name; either must have the hash ``config.json`` records."""
    label = checkpoint_label(directory)
    if not paths.PLAIN_NAME.fullmatch(meta.tokenizer):  # it becomes part of a file's path
        raise StoryError(
            f"checkpoint {label}: {CONFIG_FILE} names vocabulary {meta.tokenizer!r}, which is "
            "not a vocabulary name"
        )
    own = Path(directory) / VOCABULARY_FILE
    if own.exists():
        try:
            tokenizer = read_tokenizer_file(own, meta.tokenizer)
        except StoryError as exc:
            raise StoryError(f"checkpoint {label}: {exc}") from exc
        where = f"its {VOCABULARY_FILE}"
    else:
        try:
            tokenizer = load_tokenizer(meta.tokenizer)
        except StoryError as exc:
            raise StoryError(
                f"checkpoint {label} was trained with vocabulary {meta.tokenizer!r}, which it "
                f"does not carry and this install does not have ({exc})"
            ) from exc
        where = f"this install's {meta.tokenizer}"
    if tokenizer.hash != meta.tokenizer_hash:
        raise StoryError(
            f"checkpoint {label} was trained with vocabulary {meta.tokenizer} "
            f"{meta.tokenizer_hash}, but {where} is {tokenizer.hash}"
        )
    return tokenizer


def _check_names_and_shapes(
    model: nn.Module, shapes: dict[str, tuple[int, ...]], label: str
) -> None:
    """The tensors ``shapes`` names are exactly ``model``'s (tied weights may be absent)."""
    expected = model.state_dict()
    tied = _tied_names(model)
    missing = [
        k for k in expected if k not in shapes and not any(t in shapes for t in tied.get(k, ()))
    ]
    unexpected = [k for k in shapes if k not in expected]
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise StoryError(f"checkpoint {label}: weights do not match its config ({detail})")
    for key, shape in shapes.items():
        if tuple(shape) != tuple(expected[key].shape):
            raise StoryError(
                f"checkpoint {label}: {key} has shape {tuple(shape)}, "
                f"config expects {tuple(expected[key].shape)}"
            )


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], label: str) -> None:
    """Copy ``state`` into ``model`` after checking names, shapes and values."""
    expected = model.state_dict()
    _check_names_and_shapes(model, {k: tuple(t.shape) for k, t in state.items()}, label)
    for key, tensor in state.items():
        _require_finite(key, tensor, label)
    with torch.no_grad():
        for key, tensor in state.items():
            expected[key].copy_(tensor.to(expected[key].dtype))


def _nonfinite(key: str, tensor: torch.Tensor) -> str | None:
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        return f"{key} contains NaN or infinite values"
    return None


def _require_finite(key: str, tensor: torch.Tensor, label: str) -> None:
    if (reason := _nonfinite(key, tensor)) is not None:
        raise StoryError(f"checkpoint {label}: {reason}")


def weight_values_reason(weights: Path) -> str | None:
    """Why the weights file's values would not load (the first tensor holding NaN or an
    infinity, or a file that is not safetensors), or None; read one tensor at a time with no
    model built. Names no checkpoint: ``weights_problem`` remembers it per file."""
    try:
        with safe_open(str(weights), framework="pt") as handle:
            names = handle.keys()  # a safe_open handle is not iterable itself
            for key in names:
                if (reason := _nonfinite(key, handle.get_tensor(key))) is not None:
                    return reason
    except (SafetensorError, ValueError) as exc:
        return f"{WEIGHTS_FILE} is corrupt or truncated ({_first_line(exc)})"
    return None


def values_problem(directory: Path) -> str | None:
    """Why the checkpoint's weights would not load for their values, as one line naming it,
    or None; remembered per weights file, so a listing reads each checkpoint's tensors once."""
    reason = weights_problem(Path(directory) / WEIGHTS_FILE, weight_values_reason)
    return None if reason is None else f"checkpoint {checkpoint_label(directory)}: {reason}"


def _tied_names(model: nn.Module) -> dict[str, list[str]]:
    """For each parameter shared under several names (tied weights), its other names: a
    checkpoint stores it once. Grouped in one pass, so a config naming hundreds of layers the
    weights lack fails in a moment, not in minutes."""
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    return {
        name: [other for other in group if other != name]
        for group in names.values()
        if len(group) > 1
        for name in group
    }


# ---------------------------------------------------------------------------- finding models


@dataclass
class ModelEntry:
    """One row of ``storytui models``: a readable checkpoint or a broken one with its error."""

    name: str
    path: Path
    meta: CheckpointMeta | None
    error: str | None = None
    bundled: bool = False


def list_checkpoints(include_bundled: bool = True) -> list[ModelEntry]:
    entries: list[ModelEntry] = []
    root = paths.models_dir()
    restore_replaced(root)
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if not child.is_dir() or child.name.startswith("."):
                continue
            try:
                entries.append(ModelEntry(child.name, child, read_meta(child)))
            except StoryError as exc:
                entries.append(ModelEntry(child.name, child, None, error=str(exc)))
    bundled = paths.bundled_model_dir()
    if include_bundled and (bundled / CONFIG_FILE).is_file():
        try:
            entries.append(ModelEntry("default", bundled, read_meta(bundled), bundled=True))
        except StoryError as exc:
            entries.append(ModelEntry("default", bundled, None, error=str(exc), bundled=True))
    return entries


NO_MODEL_HINT = (
    "no model yet: train one with `storytui train pretrain --preset small --out mymodel` "
    "(or import one with `storytui models import`)"
)


def resolve_model(name_or_dir: str | None) -> Path:
    """Find a checkpoint directory by path or name; ``None`` picks the best available.

    The best available is the first of ``model_candidates``: finetuned, imported, pretrained,
    then the bundled default.
    """
    if name_or_dir is None:
        candidates = model_candidates()
        if not candidates:
            raise StoryError(NO_MODEL_HINT)
        return candidates[0]
    if not name_or_dir.strip():
        raise StoryError("the model name is empty; `storytui models` lists them")
    name = name_or_dir.rstrip("/") or name_or_dir  # `mymodel/`, as a shell completes it
    restore_replaced(paths.models_dir())
    if paths.is_model_name(name) and _is_dir(paths.model_dir(name)):
        return paths.model_dir(name)  # a plain name is the data dir's model; `./NAME` a folder
    as_path = Path(name_or_dir).expanduser()
    is_dir = _is_dir(as_path)
    if is_dir and (as_path / CONFIG_FILE).exists():
        return as_path
    bundled = paths.bundled_model_dir()
    if name_or_dir == paths.BUNDLED_MODEL_NAME and (bundled / CONFIG_FILE).is_file():
        return bundled
    if is_dir:
        raise StoryError(f"{as_path} is not a checkpoint directory (no {CONFIG_FILE})")
    if as_path.name in (CONFIG_FILE, WEIGHTS_FILE) and (as_path.parent / CONFIG_FILE).is_file():
        raise StoryError(
            f"{as_path} is a file inside a checkpoint; give its folder {as_path.parent}"
        )
    raise StoryError(f"no model named {name_or_dir!r}; `storytui models` lists them")


def _created_at(meta: CheckpointMeta) -> dt.datetime:
    """When the checkpoint was made, as a moment (times written in other zones compare
    right); one without a readable time counts as oldest."""
    try:
        moment = dt.datetime.fromisoformat(meta.created)
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _is_dir(path: Path) -> bool:
    """``path.is_dir()``, False for a name too long to be a path (it can only be a missing
    model's name)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def model_candidates(entries: list[ModelEntry] | None = None) -> list[Path]:
    """The checkpoints a command without ``--model`` tries, best first: finetuned, imported,
    then pretrained ones, newest first within each, then the bundled default. ``entries``: a
    ``list_checkpoints()`` the caller already has."""
    if entries is None:
        entries = list_checkpoints()
    usable = [e for e in entries if e.meta is not None and not e.bundled]
    order = {"finetune": 0, "imported": 1, "pretrain": 2}
    usable = [e for e in usable if e.meta.stage in order]
    usable.sort(key=lambda e: _created_at(e.meta), reverse=True)
    usable.sort(key=lambda e: order[e.meta.stage])  # stable: newest first within a stage
    candidates = [e.path for e in usable]
    if (paths.bundled_model_dir() / CONFIG_FILE).is_file():
        candidates.append(paths.bundled_model_dir())
    return candidates


def load_best_checkpoint() -> tuple[Checkpoint, list[str]]:
    """The first of ``model_candidates`` that loads, and why each one before it did not: a
    broken newest checkpoint must not leave the writer without any model."""
    skipped: list[str] = []
    for candidate in model_candidates():
        try:
            return load_checkpoint(candidate), skipped
        except StoryError as exc:
            skipped.append(str(exc))
    if skipped:
        raise StoryError(f"no model could be loaded: {skipped[0]}")
    raise StoryError(NO_MODEL_HINT)
