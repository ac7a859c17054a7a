"""`storytui models import`: original seed checkpoints in, faithful storytui checkpoints out.

A small lecture GPT (width 64, 2 layers, 4 heads, block 32) with the real GPT-2 vocabulary is
saved in each of the original scripts' three shapes, imported through the CLI and the Python API,
and compared with the reference: logits to 1e-5 (float32) and greedy tokens exactly. Bad files
must fail with one line; those tests run without the GPT-2 vocabulary.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from storytui.checkpoint import load_checkpoint, read_meta
from storytui.errors import StoryError
from storytui.generation import Generator
from storytui.paths import model_dir
from storytui.sampling import SamplingSettings
from storytui.seed_import import _load_payload, import_seed_checkpoint, read_seed_file
from storytui.session import load_generator
from storytui.story_format import SEED_TEMPLATE, StoryTemplate, format_story
from storytui.tokenizer import load_tokenizer
from tests.seed_reference import (
    GPT2_VOCAB_SIZE,
    SMALL_HYPERPARAMETERS,
    LectureGPT,
    make_reference,
    save_shape,
    use_gpt2_vocabulary,
)
from tests.test_cli import run_cli

TOLERANCE = 1e-5
SHAPES = ("pretrain", "periodic", "finetuned")
GREEDY = SamplingSettings(
    temperature=0.0, top_p=1.0, min_p=0.0, repetition_penalty=1.0, top_alternatives=0
)


@pytest.fixture
def gpt2(monkeypatch):
    return use_gpt2_vocabulary(monkeypatch)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference() -> LectureGPT:
    return make_reference(GPT2_VOCAB_SIZE, SMALL_HYPERPARAMETERS, seed=7)


@pytest.fixture(scope="module")
def originals(reference: LectureGPT, tmp_path_factory) -> dict[str, Path]:
    """The reference saved as each of the original scripts saved it."""
    folder = tmp_path_factory.mktemp("originals")
    return {
        shape: save_shape(folder / f"{shape}.pt", reference, SMALL_HYPERPARAMETERS, shape)
        for shape in SHAPES
    }


def reference_greedy(reference: LectureGPT, ids: list[int], count: int) -> list[int]:
    return reference.generate(torch.tensor([ids]), count, greedy=True)[0, len(ids) :].tolist()


def cut_like_storytui(text: str, stops: tuple[str, ...]) -> str:
    """The original's output handling: cut at the first stop string."""
    cuts = [text.find(stop) for stop in stops if stop in text]
    return text[: min(cuts)] if cuts else text


# ---------------------------------------------------------------------------- importing


@pytest.mark.gpt2
@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_imports_with_the_reference_logits(
    gpt2, reference: LectureGPT, originals: dict[str, Path], shape: str
) -> None:
    directory = import_seed_checkpoint(originals[shape], f"seed-{shape}")
    checkpoint = load_checkpoint(directory)
    meta = checkpoint.meta
    assert meta.stage == "imported"
    assert meta.model.arch == "seed"
    assert (meta.model.block_size, meta.model.n_embd) == (32, 64)
    assert (meta.model.n_layer, meta.model.n_head, meta.model.dropout) == (2, 4, 0.2)
    assert meta.tokenizer == "gpt2" and meta.tokenizer_hash == gpt2.hash
    assert meta.template == SEED_TEMPLATE
    assert meta.preset == "custom"  # not the 76.9M size
    assert meta.steps == (1500 if shape == "periodic" else 0)
    expected_format = {"pretrain": "pretrain", "periodic": "pretrain-periodic"}
    assert meta.extra["source_format"] == expected_format.get(shape, "finetuned")
    assert meta.n_params == sum(p.numel() for p in reference.parameters())
    stored = load_file(str(directory / "model.safetensors"))
    assert not any("tril" in key for key in stored)
    assert stored["blocks.1.attn.qkv.weight"].shape == (3 * 64, 64)
    idx = torch.randint(0, GPT2_VOCAB_SIZE, (2, 32), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits, _ = checkpoint.model(idx)
        torch.testing.assert_close(logits, reference(idx), atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.gpt2
def test_cli_import_then_greedy_continue_equals_the_original(
    gpt2, reference: LectureGPT, originals: dict[str, Path], tmp_path: Path, capsys
) -> None:
    code, out, err = run_cli(
        ["models", "import", str(originals["finetuned"]), "--name", "seed-ft"], capsys
    )
    assert code == 0, err
    assert "seed-ft" in out and "finetuned" in out
    assert str(model_dir("seed-ft")) in out
    assert read_meta(model_dir("seed-ft")).stage == "imported"

    story = tmp_path / "story.txt"
    story.write_text("", encoding="utf-8")
    prompt = "A dragon guards the last library on Earth."
    args = ["continue", str(story), "--model", "seed-ft", "--temperature", "0"]
    args += ["--repetition-penalty", "1", "--top-p", "1", "--min-p", "0", "-n", "60"]
    code, out, err = run_cli([*args, "--prompt", prompt], capsys)
    assert code == 0, err
    header = SEED_TEMPLATE.prompt_only.format(prompt=prompt)
    ids = reference_greedy(reference, gpt2.encode(header), 60)
    if gpt2.eot in ids:
        ids = ids[: ids.index(gpt2.eot)]
    expected = cut_like_storytui(gpt2.decode(ids), SEED_TEMPLATE.stop_strings)
    assert out == expected + "\n"


@pytest.mark.gpt2
def test_imported_greedy_tokens_equal_the_original_past_the_block_size(
    gpt2, reference: LectureGPT, originals: dict[str, Path]
) -> None:
    import_seed_checkpoint(originals["pretrain"], "seed-pre")
    generator = load_generator("seed-pre")
    generator.template = StoryTemplate()  # no stop strings: compare every token
    text = "It was a dark and stormy night; the rain fell in torrents"
    ours = [
        e.token
        for e in generator.stream_events(text, GREEDY.with_changes(max_new_tokens=300))
        if e.token >= 0
    ]
    theirs = reference_greedy(reference, gpt2.encode(text), 300)
    stop = theirs.index(gpt2.eot) if gpt2.eot in theirs else len(theirs)
    assert ours == theirs[:stop]
    assert len(ours) > 2 * 32


@pytest.mark.gpt2
def test_half_precision_and_compiled_saves_import_losslessly(
    gpt2, reference: LectureGPT, tmp_path: Path
) -> None:
    half = make_reference(GPT2_VOCAB_SIZE, SMALL_HYPERPARAMETERS, seed=7).half()
    state = {f"_orig_mod.{k}": v for k, v in half.state_dict().items()}
    path = tmp_path / "half.pt"
    torch.save({"model_state_dict": state, "vocabulary_size": GPT2_VOCAB_SIZE}, path)
    directory = import_seed_checkpoint(path, "seed-half")
    assert read_meta(directory).weights_dtype == "float16"
    rounded = half.float()
    checkpoint = load_checkpoint(directory)
    idx = torch.arange(32).unsqueeze(0)
    with torch.no_grad():
        logits, _ = checkpoint.model(idx)
        torch.testing.assert_close(logits, rounded(idx), atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.gpt2
def test_seed_preset_shows_the_original_parameter_count(gpt2, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run_cli(["models", "presets"], capsys)
    assert code == 0, err
    row = next(line for line in out.splitlines() if " seed " in line)
    assert "76,852,305" in row and "gpt2" in row
    assert "gpt2: 50,257 tokens" in out  # the vocabularies' sizes, below the table


@pytest.mark.gpt2
def test_existing_name_needs_force(gpt2, originals: dict[str, Path], capsys) -> None:
    import_seed_checkpoint(originals["finetuned"], "taken")
    code, _, err = run_cli(
        ["models", "import", str(originals["pretrain"]), "--name", "taken"], capsys
    )
    assert code == 1 and "already exists" in err
    assert read_meta(model_dir("taken")).extra["source_format"] == "finetuned"
    args = ["models", "import", str(originals["pretrain"]), "--name", "taken", "--force"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert read_meta(model_dir("taken")).extra["source_format"] == "pretrain"


# ---------------------------------------------------------------------------- the template


def test_seed_template_lays_out_prompt_and_story_exactly() -> None:
    formatted = format_story("The gate opened.", prompt="A dragon", template=SEED_TEMPLATE)
    assert formatted.text == (
        "Below is a writing prompt. Write a creative story based on it.\n\n"
        "### Prompt:\nA dragon\n\n### Story:\nThe gate opened."
    )
    assert format_story("Plain text.", template=SEED_TEMPLATE).text == "Plain text."
    # The seed models know no memory: it is ignored, with or without a prompt.
    assert format_story("Plain.", memory="Ada", template=SEED_TEMPLATE).header == ""
    with_memory = format_story("x", prompt="A dragon", memory="Ada", template=SEED_TEMPLATE)
    assert with_memory.header == SEED_TEMPLATE.prompt_only.format(prompt="A dragon")
    # storytui's own template still uses memory.
    assert "Ada" in format_story("x", memory="Ada").header


# ---------------------------------------------------------------------------- bad files


class Custom:
    """Anything that would need its class (code) to unpickle."""


@pytest.fixture(scope="module")
def small_state() -> dict[str, torch.Tensor]:
    return make_reference(512, SMALL_HYPERPARAMETERS, seed=1).state_dict()


def _payload(state: dict, **extra) -> dict:
    return {"model_state_dict": state, "vocabulary_size": 512, **extra}


def _without(state: dict, key: str) -> dict:
    return {k: v for k, v in state.items() if k != key}


def _replaced(state: dict, key: str, value: torch.Tensor) -> dict:
    return {**state, key: value}


BAD_FILES = {
    "random bytes": (lambda s: random.Random(0).randbytes(4096), "is not a PyTorch checkpoint"),
    "text": (lambda s: b"hello world\n", "is not a PyTorch checkpoint"),
    "empty": (lambda s: b"", "is not a PyTorch checkpoint"),
    "plain pickle": (lambda s: pickle.dumps(Custom(), protocol=4), "is not a PyTorch checkpoint"),
    "custom class": ({"model_state_dict": Custom()}, "needs code to load"),
    "list": ([1, 2, 3], "no model_state_dict (a list)"),
    "no state dict": ({"state_dict": {}, "vocabulary_size": 512}, "no model_state_dict (keys:"),
    "state not tensors": ({"model_state_dict": {"a": 1}}, "is not a named tensor"),
    "missing key": (lambda s: _payload(_without(s, "lm_head.bias")), "lacks lm_head.bias"),
    "no blocks": (
        lambda s: _payload({k: v for k, v in s.items() if not k.startswith("blocks.")}),
        "no attention blocks",
    ),
    "missing head weight": (
        lambda s: _payload(_without(s, "blocks.1.sa.heads.2.value.weight")),
        "lacks blocks.1.sa.heads.2.value.weight",
    ),
    "unexpected key": (
        lambda s: _payload({**s, "blocks.0.extra.weight": torch.zeros(3)}),
        "unexpected blocks.0.extra.weight",
    ),
    "wrong shape": (
        lambda s: _payload(_replaced(s, "blocks.0.ffwd.net.2.bias", torch.zeros(65))),
        "blocks.0.ffwd.net.2.bias has shape (65,), expected (64,)",
    ),
    "bad head shape": (
        lambda s: _payload(_replaced(s, "blocks.0.sa.heads.0.key.weight", torch.zeros(8, 64))),
        "blocks.0.sa.heads.0.key.weight has shape (8, 64), expected (16, 64)",
    ),
    "altered mask": (
        lambda s: _payload(_replaced(s, "blocks.0.sa.heads.1.tril", torch.ones(32, 32))),
        "blocks.0.sa.heads.1.tril is not the causal mask",
    ),
    "hyperparameters disagree": (
        lambda s: _payload(s, hyperparameters={**SMALL_HYPERPARAMETERS, "n_layer": 8}),
        "hyperparameters say n_layer=8, but the weights have n_layer=2",
    ),
    "hyperparameters head count": (
        lambda s: _payload(s, hyperparameters={**SMALL_HYPERPARAMETERS, "n_head": 8}),
        "hyperparameters say n_head=8, but the weights have n_head=4",
    ),
    "vocabulary size disagrees": (
        lambda s: {"model_state_dict": s, "vocabulary_size": 50257},
        "vocabulary_size is 50257, but the embedding has 512 rows",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_fail_with_one_line(
    case: str, small_state: dict, tmp_path: Path, storytui_home: Path, capsys
) -> None:
    make, message = BAD_FILES[case]
    path = tmp_path / "bad.pt"
    content = make(small_state) if callable(make) else make
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    code, _, err = run_cli(["models", "import", str(path), "--name", "bad"], capsys)
    assert code == 1
    assert err.startswith("storytui: error: ") and err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err
    assert not (storytui_home / "models" / "bad").exists()


def test_any_random_bytes_fail_with_a_storyerror(tmp_path: Path) -> None:
    """Garbage trips the unpickler in many ways (about 1 in 15 raised IndexError once)."""
    path = tmp_path / "noise.pt"
    for seed in range(300):
        path.write_bytes(random.Random(seed).randbytes(4096))
        with pytest.raises(StoryError, match=r"noise\.pt is (not|a corrupt)"):
            _load_payload(path)


def test_truncated_and_missing_files_fail_with_one_line(
    small_state: dict, tmp_path: Path, capsys
) -> None:
    whole = tmp_path / "whole.pt"
    torch.save(_payload(small_state), whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    for path, message in ((cut, "corrupt or truncated"), (tmp_path / "nope.pt", "is not a file")):
        code, _, err = run_cli(["models", "import", str(path), "--name", "x"], capsys)
        assert code == 1 and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "..", "x\\y"])
def test_invalid_names_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(StoryError, match="invalid model name"):
        import_seed_checkpoint(tmp_path / "any.pt", name)


def test_reading_needs_no_vocabulary(small_state: dict, tmp_path: Path) -> None:
    """The checks on the file itself run before (and without) the GPT-2 vocabulary."""
    path = tmp_path / "small.pt"
    torch.save(_payload(small_state, hyperparameters=SMALL_HYPERPARAMETERS), path)
    seed = read_seed_file(path)
    assert seed.config.vocab_size == 512 and seed.config.mlp_hidden == 256
    assert seed.source_format == "pretrain"
    assert "blocks.0.attn.qkv.weight" in seed.state


@pytest.mark.gpt2
def test_a_vocabulary_other_than_gpt2_is_refused(
    gpt2, small_state: dict, tmp_path: Path, capsys
) -> None:
    path = tmp_path / "small.pt"
    torch.save(_payload(small_state), path)
    code, _, err = run_cli(["models", "import", str(path), "--name", "small"], capsys)
    assert code == 1
    assert "vocabulary of 512 tokens, but seed models use the GPT-2 vocabulary (50,257" in err


def test_generator_sees_the_seed_layout(small_state: dict) -> None:
    """The generator's head is exactly the template: nothing added before it."""
    tokenizer = load_tokenizer()
    from storytui.model import ModelConfig
    from storytui.seed_model import SeedModel

    config = ModelConfig(
        vocab_size=tokenizer.n_vocab, block_size=32, n_layer=1, n_head=2, n_embd=16,
        mlp_hidden=64, arch="seed",
    )  # fmt: skip
    generator = Generator(SeedModel(config), tokenizer, template=SEED_TEMPLATE)
    head, story = generator.context_ids("", prompt="A dragon")
    assert tokenizer.decode(head) == SEED_TEMPLATE.prompt_only.format(prompt="A dragon")
    assert story == []
