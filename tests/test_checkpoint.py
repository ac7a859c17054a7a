"""Checkpoints: saved atomically, loaded with every mismatch refused in one line."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from storytui.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    list_checkpoints,
    load_best_checkpoint,
    load_checkpoint,
    model_candidates,
    read_meta,
    resolve_model,
)
from storytui.errors import StoryError
from tests.conftest import make_tiny_checkpoint


def test_round_trip_preserves_weights_and_meta(tiny_checkpoint: Path) -> None:
    loaded = load_checkpoint(tiny_checkpoint)
    torch.manual_seed(0)
    from storytui.model import PRESETS, StoryModel

    original = StoryModel(PRESETS["tiny"].config(loaded.tokenizer.n_vocab))
    for (name, a), (_, b) in zip(
        original.state_dict().items(), loaded.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)
    assert loaded.meta.preset == "tiny"
    assert loaded.meta.n_params == original.num_parameters()
    assert loaded.model.lm_head.weight.data_ptr() == loaded.model.embed.weight.data_ptr()
    assert (
        json.loads((tiny_checkpoint / CONFIG_FILE).read_text())["tokenizer"]["name"]
        == "storytui-16k"
    )


def test_loading_draws_no_random_numbers(tiny_checkpoint: Path) -> None:
    # the weights are read into a model built without random initialisation (a second of
    # every start at the colab preset): the random stream is untouched and nothing stays random
    torch.manual_seed(123)
    state = torch.get_rng_state()
    loaded = load_checkpoint(tiny_checkpoint)
    assert torch.equal(torch.get_rng_state(), state)
    again = load_checkpoint(tiny_checkpoint)
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], tensor), name


def test_save_leaves_no_temp_dirs_and_replaces_existing(tiny_checkpoint: Path) -> None:
    make_tiny_checkpoint(tiny_checkpoint, seed=1)
    siblings = [p.name for p in tiny_checkpoint.parent.iterdir()]
    assert siblings == ["tiny-test"]
    assert sorted(p.name for p in tiny_checkpoint.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]


def test_half_precision_save_loads_as_fp32(tmp_path: Path) -> None:
    from storytui.checkpoint import save_checkpoint

    source = load_checkpoint(make_tiny_checkpoint(tmp_path / "a"))
    save_checkpoint(tmp_path / "b", source.model, source.meta, dtype=torch.float16)
    half = load_checkpoint(tmp_path / "b")
    assert half.meta.weights_dtype == "float16"
    assert (tmp_path / "b" / WEIGHTS_FILE).stat().st_size < (
        tmp_path / "a" / WEIGHTS_FILE
    ).stat().st_size * 0.6
    a, b = source.model.embed.weight, half.model.embed.weight
    assert b.dtype == torch.float32
    torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


def _corrupt(path: Path, how: str) -> None:
    weights, config = path / WEIGHTS_FILE, path / CONFIG_FILE
    if how == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif how == "bad-json":
        config.write_text("{not json")
    elif how == "wrong-hash":
        data = json.loads(config.read_text())
        data["tokenizer"]["hash"] = "sha256:0000000000000000"
        config.write_text(json.dumps(data))
    elif how == "wrong-shape":
        data = json.loads(config.read_text())
        data["model"]["n_embd"] = 64
        config.write_text(json.dumps(data))
    elif how == "no-weights":
        weights.unlink()
    elif how == "nan":
        from safetensors.torch import load_file, save_file

        state = load_file(str(weights))
        state["norm.weight"][0] = float("nan")
        save_file(state, str(weights))
    elif how == "weights-folder":
        weights.unlink()
        weights.mkdir()
    elif how == "config-folder":
        config.unlink()
        config.mkdir()
    elif how == "huge-width":  # a hand-edited size the weights do not have
        data = json.loads(config.read_text())
        data["model"].update(n_embd=1_000_000, n_head=1000, n_kv_head=None)
        config.write_text(json.dumps(data))
    elif how == "missing-key":
        data = json.loads(config.read_text())
        del data["tokenizer"]
        config.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "how, message",
    [
        ("truncated", "corrupt or truncated"),
        ("bad-json", "not valid JSON"),
        ("wrong-hash", "trained with vocabulary"),
        ("wrong-shape", "shape"),
        ("no-weights", "has no model.safetensors"),
        ("nan", "NaN"),
        ("missing-key", "malformed"),
        ("weights-folder", "model.safetensors is a folder, not a file"),
        ("config-folder", "config.json is a folder, not a file"),
        ("huge-width", r"shape \(.*\), config expects \(.*1000000"),
    ],
)
def test_corrupt_checkpoints_are_refused_in_one_line(
    tiny_checkpoint: Path, how: str, message: str
) -> None:
    _corrupt(tiny_checkpoint, how)
    with pytest.raises(StoryError, match=message) as info:
        load_checkpoint(tiny_checkpoint)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": {"n_head": 0}}, "n_head must be a positive integer, not 0"),
        ({"model": {"block_size": -1}}, "block_size must be a positive integer"),
        ({"model": {"n_layer": True}}, "n_layer must be a positive integer, not True"),
        ({"model": {"n_embd": "abc"}}, "n_embd must be a positive integer, not 'abc'"),
        ({"model": {"n_kv_head": 0}}, "n_kv_head must be a positive integer"),
        ({"model": {"rope_theta": None}}, "rope_theta must be a number of at least 1"),
        ({"model": {"rope_theta": 1e-300}}, "rope_theta must be a number of at least 1"),
        ({"model": {"block_size": 10**9}}, "block_size must be at most 131,072"),
        ({"model": {"n_layer": 10**5}}, "n_layer must be at most 1,024"),
        ({"model": {"dropout": 1.5}}, "dropout must be a number in [0, 1)"),
        ({"model": {"norm_eps": 0}}, "norm_eps must be a number in (0, 1)"),
        ({"model": {"n_head": 3}}, "do not divide evenly"),
        ({"model": {"n_embd": 30, "n_head": 2, "n_kv_head": None}}, "head size 15 must be even"),
        ({"model": [1]}, "model must be an object"),
        ({"tokenizer": "storytui-16k"}, "tokenizer needs a name and a hash"),
        ({"val_bpb": "low"}, "val_bpb must be a number"),
        ({"template": {"with_memory": "{nope}"}}, "unknown slot {nope}"),
        ({"template": {"prompt_only": "{prompt} {memory}"}}, "unknown slot {memory}"),
        ({"template": {"prompt_only": "{prompt"}}, "not a valid layout"),
        ({"template": {"stop_strings": "###"}}, "stop_strings must be a list"),
        ({"template": {"stop_strings": [""]}}, "non-empty strings"),
    ],
)
def test_hand_edited_configs_are_refused_by_name(
    tiny_checkpoint: Path, change: dict, message: str
) -> None:
    """Each value that would fail deep inside torch or at the first prompt is named when the
    checkpoint is read; `storytui models` then lists it as unreadable instead of crashing."""
    config = tiny_checkpoint / "config.json"
    data = json.loads(config.read_text())
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    config.write_text(json.dumps(data))
    with pytest.raises(StoryError) as info:
        read_meta(tiny_checkpoint)
    assert message in str(info.value) and "malformed" in str(info.value)
    entry = next(e for e in list_checkpoints() if e.name == tiny_checkpoint.name)
    assert entry.meta is None and message in entry.error


def test_a_config_naming_far_more_layers_than_the_weights_fails_at_once(
    tiny_checkpoint: Path,
) -> None:
    """A hand-typed 600 for 6 layers: the missing tensors are named in a moment (checking
    each against every parameter for a tie once took a minute at the colab width)."""
    config = tiny_checkpoint / "config.json"
    data = json.loads(config.read_text())
    data["model"]["n_layer"] = 1_000
    config.write_text(json.dumps(data))
    started = time.perf_counter()
    with pytest.raises(StoryError, match=r"weights do not match its config \(missing"):
        load_checkpoint(tiny_checkpoint)
    assert time.perf_counter() - started < 10


def test_resolve_prefers_newest_finetune_then_pretrain(storytui_home: Path) -> None:
    models = storytui_home / "models"
    with pytest.raises(StoryError, match="no model yet"):
        resolve_model(None)
    make_tiny_checkpoint(models / "old-pre", created="2026-01-01T00:00:00+00:00")
    make_tiny_checkpoint(models / "new-pre", created="2026-03-01T00:00:00+00:00")
    assert resolve_model(None).name == "new-pre"
    make_tiny_checkpoint(models / "ft", stage="finetune", created="2026-02-01T00:00:00+00:00")
    assert resolve_model(None).name == "ft"
    assert resolve_model("old-pre").name == "old-pre"
    assert resolve_model(str(models / "old-pre")) == models / "old-pre"
    with pytest.raises(StoryError, match="no model named 'missing'"):
        resolve_model("missing")
    for inside in (models / "ft" / WEIGHTS_FILE, models / "ft" / CONFIG_FILE):
        with pytest.raises(StoryError, match="is a file inside a checkpoint; give its folder"):
            resolve_model(str(inside))
    assert read_meta(models / "ft").stage == "finetune"
    # times are compared as moments: 12:00+05:00 is 07:00 UTC, before 08:00 UTC
    make_tiny_checkpoint(models / "east", stage="finetune", created="2026-04-01T12:00:00+05:00")
    make_tiny_checkpoint(models / "utc", stage="finetune", created="2026-04-01T08:00:00+00:00")
    make_tiny_checkpoint(models / "odd", stage="finetune", created="yesterday")
    assert [p.name for p in model_candidates()][:4] == ["utc", "east", "ft", "odd"]


def test_model_names_never_lead_out_of_the_models_dir(storytui_home: Path) -> None:
    from storytui import paths

    for name in ("..", ".", "../victim", "/tmp", "a/b", "a\\b", "", ".hidden"):
        with pytest.raises(StoryError, match="invalid model name"):
            paths.model_dir(name)
    assert paths.model_dir("my-model_2.1") == storytui_home / "models" / "my-model_2.1"
    # a name an older version let a model have still names it; new models get plain names
    assert paths.model_dir("my model") == storytui_home / "models" / "my model"
    for name in ("my model", "x" * 65, "-dash", "caf\u00e9"):
        with pytest.raises(StoryError, match="use letters, digits"):
            paths.check_new_model_name(name)
    with pytest.raises(StoryError, match="bundled model's name"):
        paths.check_new_model_name("default")


def test_a_model_with_an_old_style_name_is_still_usable(storytui_home: Path) -> None:
    spaced = make_tiny_checkpoint(storytui_home / "models" / "my model")
    assert resolve_model("my model") == spaced == resolve_model("my model/")
    assert [e.name for e in list_checkpoints(include_bundled=False)] == ["my model"]


def test_a_broken_best_model_falls_back_to_the_next(storytui_home: Path) -> None:
    """Weights that fail to load only show at load time: the next candidate is used."""
    models = storytui_home / "models"
    make_tiny_checkpoint(models / "older", stage="finetune", created="2026-01-01T00:00:00+00:00")
    newest = make_tiny_checkpoint(
        models / "newest", stage="finetune", created="2026-02-01T00:00:00+00:00"
    )
    assert resolve_model(None) == newest
    _corrupt(newest, "truncated")
    checkpoint, skipped = load_best_checkpoint()
    assert checkpoint.name == "older"
    assert len(skipped) == 1 and "newest" in skipped[0] and "truncated" in skipped[0]
    _corrupt(models / "older", "truncated")
    with pytest.raises(StoryError, match="no model could be loaded"):
        load_best_checkpoint()


def test_explicit_model_names_are_checked(storytui_home: Path, tmp_path: Path) -> None:
    with pytest.raises(StoryError, match="model name is empty"):
        resolve_model("")
    with pytest.raises(StoryError, match="not a checkpoint directory"):
        resolve_model(str(tmp_path))
    with pytest.raises(StoryError, match=r"no model named '\.\./x'"):
        resolve_model("../x")


def test_messages_name_a_model_as_the_writer_types_it(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """By name in the data dir (what --model takes), by path anywhere else."""
    outside = make_tiny_checkpoint(tmp_path / "elsewhere")
    for directory, label in ((tiny_checkpoint, "tiny-test"), (outside, str(outside))):
        for how in ("bad-json", "truncated"):
            _corrupt(directory, how)
            with pytest.raises(StoryError) as info:
                load_checkpoint(directory)
            assert str(info.value).startswith(f"checkpoint {label}")
            make_tiny_checkpoint(directory)


def test_a_name_too_long_for_a_path_is_just_no_such_model(storytui_home: Path) -> None:
    with pytest.raises(StoryError, match="no model named"):
        resolve_model("a" * 300)
    with pytest.raises(StoryError, match="no model named"):
        resolve_model("a" * 5000)  # longer than a whole path may be


def test_checking_a_checkpoint_reads_no_tensor_data(tiny_checkpoint: Path, monkeypatch) -> None:
    """``check_checkpoint`` (what ``models info`` runs) finds what loading would, from the
    config, the vocabulary and the weights' header alone: a hand-edited size is refused
    before anything is allocated for it."""
    from storytui import checkpoint
    from storytui.checkpoint import check_checkpoint

    assert check_checkpoint(tiny_checkpoint).preset == read_meta(tiny_checkpoint).preset
    monkeypatch.setattr(checkpoint, "load_file", lambda *_: pytest.fail("read tensor data"))
    for how, message in (("huge-width", "config expects"), ("truncated", "truncated")):
        _corrupt(tiny_checkpoint, how)
        with pytest.raises(StoryError, match=message):
            check_checkpoint(tiny_checkpoint)
        with pytest.raises(StoryError, match=message):
            load_checkpoint(tiny_checkpoint)  # refused before its tensors are read
        make_tiny_checkpoint(tiny_checkpoint)


@pytest.mark.parametrize("name", [CONFIG_FILE, WEIGHTS_FILE])
def test_a_file_the_user_may_not_read_is_said_to_be_unreadable(
    tiny_checkpoint: Path, monkeypatch, name: str
) -> None:
    """Not 'missing' or 'corrupt': a permission problem names itself (simulated, as root may
    read anything), and `storytui models` lists the checkpoint as unreadable, not crash."""
    import builtins

    from storytui import checkpoint

    real_open = builtins.open

    def guarded_open(path, *args, **kwargs):
        if Path(path).name == name:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "open", guarded_open, raising=False)
    if name == CONFIG_FILE:
        monkeypatch.setattr(Path, "read_text", lambda self, **_: guarded_open(self).read())
    message = f"checkpoint tiny-test: cannot read {name}: Permission denied"
    with pytest.raises(StoryError) as info:
        load_checkpoint(tiny_checkpoint)
    assert str(info.value) == message
    entries = list_checkpoints(include_bundled=False)
    if name == CONFIG_FILE:
        assert [(e.name, e.error) for e in entries] == [("tiny-test", message)]


def test_a_plain_name_is_the_data_dirs_model_even_beside_a_folder_of_that_name(
    storytui_home: Path, tmp_path: Path, monkeypatch
) -> None:
    """`-m good` in a folder that holds a `good/` checkpoint is still the data dir's model;
    `./good` is the folder, and its messages say `./good`, not the model's name."""
    ours = make_tiny_checkpoint(storytui_home / "models" / "good")
    monkeypatch.chdir(tmp_path)
    here = make_tiny_checkpoint(tmp_path / "good")
    (here / CONFIG_FILE).write_text("{not json")
    assert resolve_model("good") == ours == resolve_model("good/")
    assert resolve_model("./good").resolve() == here
    with pytest.raises(StoryError) as info:
        load_checkpoint(resolve_model("./good"))
    assert str(info.value).startswith(f"checkpoint .{os.sep}good: config.json is not valid JSON")
