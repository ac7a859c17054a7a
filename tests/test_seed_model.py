"""SeedModel computes exactly the lecture GPT: parameter count, logits, cache, loss, generation.

Logits are compared with an independent per-head implementation (``seed_reference.py``) to
1e-5 in float32; generation is compared token by token with the original ``generate`` loop.
These tests use the storytui-16k vocabulary at small sizes, so they need no GPT-2 file.
"""

from __future__ import annotations

import pytest
import torch

from storytui.generation import Generator
from storytui.model import PRESETS, ModelConfig, build_model, count_parameters
from storytui.sampling import SamplingSettings
from storytui.seed_model import SeedModel, lecture_to_seed_state
from storytui.story_format import StoryTemplate
from storytui.tokenizer import load_tokenizer
from tests.seed_reference import (
    DEFAULT_HYPERPARAMETERS,
    GPT2_VOCAB_SIZE,
    SMALL_HYPERPARAMETERS,
    LectureGPT,
    make_reference,
)

TOLERANCE = 1e-5  # float32 logits, fused SDPA vs per-head softmax
GREEDY = SamplingSettings(
    temperature=0.0, top_p=1.0, min_p=0.0, repetition_penalty=1.0, top_alternatives=0
)
PURE_SAMPLING = SamplingSettings(
    temperature=1.0, top_p=1.0, min_p=0.0, repetition_penalty=1.0, top_alternatives=0
)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matmuls run far faster on one thread, especially on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def seed_config(vocab_size: int, hyper: dict) -> ModelConfig:
    return ModelConfig(
        vocab_size=vocab_size,
        block_size=hyper["block_size"],
        n_layer=hyper["n_layer"],
        n_head=hyper["n_head"],
        n_embd=hyper["n_emb"],
        mlp_hidden=4 * hyper["n_emb"],
        dropout=hyper["dropout"],
        arch="seed",
    )


def converted(reference: LectureGPT, vocab_size: int, hyper: dict) -> SeedModel:
    model = SeedModel(seed_config(vocab_size, hyper))
    state = lecture_to_seed_state(reference.state_dict(), hyper["n_layer"], hyper["n_head"])
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def pair() -> tuple[LectureGPT, SeedModel]:
    vocab = load_tokenizer().n_vocab
    reference = make_reference(vocab, SMALL_HYPERPARAMETERS, seed=0)
    return reference, converted(reference, vocab, SMALL_HYPERPARAMETERS)


def test_seed_preset_has_the_original_parameter_count() -> None:
    config = PRESETS["seed"].config(GPT2_VOCAB_SIZE)
    assert config == seed_config(GPT2_VOCAB_SIZE, DEFAULT_HYPERPARAMETERS)
    with torch.device("meta"):
        reference = LectureGPT(GPT2_VOCAB_SIZE, **DEFAULT_HYPERPARAMETERS)
    assert sum(p.numel() for p in reference.parameters()) == 76_852_305
    assert count_parameters(config) == 76_852_305
    assert isinstance(build_model(config), SeedModel)


def test_state_dict_is_the_documented_layout_without_masks(pair) -> None:
    _, model = pair
    keys = set(model.state_dict())
    assert not any("tril" in key for key in keys)
    per_block = {
        "ln1.weight", "ln1.bias", "attn.qkv.weight", "attn.proj.weight", "attn.proj.bias",
        "ln2.weight", "ln2.bias", "mlp.fc.weight", "mlp.fc.bias", "mlp.proj.weight",
        "mlp.proj.bias",
    }  # fmt: skip
    expected = {
        "token_embedding.weight", "position_embedding.weight", "ln_f.weight", "ln_f.bias",
        "lm_head.weight", "lm_head.bias",
    }  # fmt: skip
    expected |= {f"blocks.{i}.{name}" for i in range(2) for name in per_block}
    assert keys == expected
    assert model.lm_head.weight.data_ptr() != model.token_embedding.weight.data_ptr()


@pytest.mark.parametrize("batch,length", [(1, 1), (2, 7), (3, 32)])
def test_logits_match_the_reference(pair, batch: int, length: int) -> None:
    reference, model = pair
    idx = torch.randint(
        0, model.config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(length)
    )
    with torch.no_grad():
        expected = reference(idx)
        logits, loss = model(idx)
    assert loss is None
    assert logits.shape == expected.shape
    torch.testing.assert_close(logits, expected, atol=TOLERANCE, rtol=TOLERANCE)


def test_score_scale_is_the_embedding_width_not_the_head_width(pair) -> None:
    """A head-width scale (the textbook one) would give visibly different logits."""
    reference, model = pair
    idx = torch.arange(20).unsqueeze(0)
    with torch.no_grad():
        expected = reference(idx)
        for block in model.blocks:
            block.attn.scale = model.config.head_dim**-0.5
        try:
            textbook, _ = model(idx)
        finally:
            for block in model.blocks:
                block.attn.scale = model.config.n_embd**-0.5
        exact, _ = model(idx)
    assert (textbook - expected).abs().max() > 1e-3
    torch.testing.assert_close(exact, expected, atol=TOLERANCE, rtol=TOLERANCE)


def test_cached_logits_equal_the_full_recompute(pair) -> None:
    _, model = pair
    idx = torch.randint(
        0, model.config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        full, _ = model(idx)
        cache = model.new_cache(batch=2)
        pieces = [model(idx[:, :10], cache=cache)[0]]  # prefill
        pieces += [model(idx[:, t : t + 1], cache=cache)[0] for t in range(10, 20)]  # decode
        pieces.append(model(idx[:, 20:], cache=cache)[0])  # a chunk after cached tokens
        last, _ = model(idx[:, :5], cache=model.new_cache(batch=2), last_only=True)
    assert cache.length == 32
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=TOLERANCE, rtol=TOLERANCE)
    torch.testing.assert_close(last[:, 0], full[:, 4], atol=TOLERANCE, rtol=TOLERANCE)


def test_positions_stop_at_the_block_size(pair) -> None:
    _, model = pair
    with pytest.raises(ValueError, match="block size"):
        model(torch.zeros(1, 33, dtype=torch.long))
    cache = model.new_cache()
    model(torch.zeros(1, 32, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="block size"):
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache)


def test_training_loss_and_dropout_follow_the_original(pair) -> None:
    reference, model = pair
    gen = torch.Generator().manual_seed(2)
    idx = torch.randint(0, model.config.vocab_size, (2, 32), generator=gen)
    targets = torch.randint(0, model.config.vocab_size, (2, 32), generator=gen)
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(
            reference(idx).view(-1, model.config.vocab_size), targets.view(-1)
        )
        _, loss = model(idx, targets=targets)
        assert abs(loss.item() - expected.item()) < TOLERANCE
        model.train()
        try:
            first, _ = model(idx)
            second, _ = model(idx)
        finally:
            model.eval()
    assert not torch.allclose(first, second)  # dropout 0.2 is active while training


def test_fresh_model_uses_the_lecture_init() -> None:
    torch.manual_seed(0)
    model = SeedModel(seed_config(1000, SMALL_HYPERPARAMETERS))
    assert torch.count_nonzero(model.lm_head.bias) == 0
    assert torch.count_nonzero(model.blocks[0].attn.proj.bias) == 0
    assert 0.015 < model.blocks[0].mlp.fc.weight.std().item() < 0.025
    with pytest.raises(ValueError, match="arch 'seed'"):
        SeedModel(PRESETS["tiny"].config(1000))


# ---------------------------------------------------------------------------- generation


def generated_tokens(generator: Generator, text: str, settings: SamplingSettings) -> list[int]:
    return [e.token for e in generator.stream_events(text, settings) if e.token >= 0]


def reference_tokens(reference: LectureGPT, ids: list[int], count: int, greedy: bool) -> list[int]:
    out = reference.generate(torch.tensor([ids]), count, greedy=greedy)
    return out[0, len(ids) :].tolist()


def test_greedy_generation_equals_the_original_loop_past_the_block_size(pair) -> None:
    reference, model = pair
    tokenizer = load_tokenizer()
    generator = Generator(model, tokenizer, template=StoryTemplate())
    text = "Once upon a time there was a dragon who"
    ours = generated_tokens(generator, text, GREEDY.with_changes(max_new_tokens=300))
    theirs = reference_tokens(reference, tokenizer.encode(text), 300, greedy=True)
    assert generator.last_stats.stopped_by == "max_tokens"
    assert ours == theirs  # 300 tokens: 291 of them past the 32-token block


def test_a_long_story_is_cropped_to_its_last_block_like_the_original(pair) -> None:
    reference, model = pair
    tokenizer = load_tokenizer()
    generator = Generator(model, tokenizer, template=StoryTemplate())
    text = " ".join(f"word{i}" for i in range(60))
    ids = tokenizer.encode(text)
    assert len(ids) > 2 * model.config.block_size
    ours = generated_tokens(generator, text, GREEDY.with_changes(max_new_tokens=40))
    assert ours == reference_tokens(reference, ids, 40, greedy=True)


def test_an_empty_story_starts_from_end_of_text(pair) -> None:
    reference, model = pair
    tokenizer = load_tokenizer()
    generator = Generator(model, tokenizer, template=StoryTemplate())
    ours = generated_tokens(generator, "", GREEDY.with_changes(max_new_tokens=20))
    assert ours == reference_tokens(reference, [tokenizer.eot], 20, greedy=True)


def test_seeded_sampling_draws_what_the_original_draws(pair) -> None:
    """Same seed: storytui's sampler and ``torch.multinomial`` after ``manual_seed`` agree."""
    reference, model = pair
    tokenizer = load_tokenizer()
    generator = Generator(model, tokenizer, template=StoryTemplate())
    text = "The ship came in at dawn"
    settings = PURE_SAMPLING.with_changes(max_new_tokens=80, seed=1234)
    ours = generated_tokens(generator, text, settings)
    torch.manual_seed(1234)
    theirs = reference_tokens(reference, tokenizer.encode(text), 80, greedy=False)
    assert ours == theirs
    assert generated_tokens(generator, text, settings) == ours
    assert generated_tokens(generator, text, settings.with_changes(seed=99)) != ours


@pytest.mark.slow
def test_full_size_logits_match_the_reference() -> None:
    hyper = DEFAULT_HYPERPARAMETERS
    reference = make_reference(GPT2_VOCAB_SIZE, hyper, seed=3)
    model = converted(reference, GPT2_VOCAB_SIZE, hyper)
    idx = torch.randint(0, GPT2_VOCAB_SIZE, (1, 256), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], reference(idx), atol=TOLERANCE, rtol=TOLERANCE)
