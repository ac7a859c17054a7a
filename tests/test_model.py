"""The transformer: presets' sizes, causal masking, and a KV cache equal to full recompute."""

from __future__ import annotations

import pytest
import torch

from storytui.model import PRESETS, ModelConfig, StoryModel, build_model, count_parameters

VOCAB = 16384
# fp32 on CPU: cached and full attention sum in different orders; 1e-4 absolute on logits of O(1)
CACHE_TOLERANCE = 1e-4


def test_preset_sizes() -> None:
    assert count_parameters(PRESETS["tiny"].config(VOCAB)) < 1_000_000
    assert 10_000_000 <= count_parameters(PRESETS["small"].config(VOCAB)) <= 20_000_000
    colab = count_parameters(PRESETS["colab"].config(VOCAB))
    assert abs(colab - 76_900_000) / 76_900_000 <= 0.01
    assert PRESETS["colab"].block_size >= 1024


def test_count_matches_built_model() -> None:
    config = PRESETS["tiny"].config(VOCAB)
    assert count_parameters(config) == StoryModel(config).num_parameters()


def _config(n_kv_head: int | None = None) -> ModelConfig:
    return ModelConfig(
        vocab_size=500, block_size=64, n_layer=2, n_head=4, n_embd=64, mlp_hidden=128,
        n_kv_head=n_kv_head,
    )  # fmt: skip


# every test below runs with one key/value head per query head, with groups of 2, and with one
@pytest.fixture(scope="module", params=[None, 2, 1], ids=["mha", "gqa", "mqa"])
def model(request) -> StoryModel:
    torch.manual_seed(0)
    return StoryModel(_config(request.param)).eval()


def test_grouped_heads_share_keys_and_values_in_order() -> None:
    """Query head h reads key/value head h // group (as Llama's repeat_kv): the same network
    with each key/value head copied out to its query heads gives the same logits."""
    torch.manual_seed(1)
    grouped = StoryModel(_config(2)).eval()
    full = StoryModel(_config(None)).eval()
    state = grouped.state_dict()
    D = 16
    for name, weight in list(state.items()):
        if name.endswith("attn.qkv.weight"):
            q, k, v = weight.split([64, 2 * D, 2 * D])
            k, v = (t.view(2, D, 64).repeat_interleave(2, dim=0).reshape(4 * D, 64) for t in (k, v))
            state[name] = torch.cat([q, k, v])
    full.load_state_dict(state)
    ids = torch.randint(0, 500, (1, 40))
    torch.testing.assert_close(grouped(ids)[0], full(ids)[0], atol=1e-5, rtol=0)
    cache = grouped.new_cache()
    assert cache.keys[0].shape[1] == 2  # the cache holds only the shared heads
    stepped = [grouped(ids[:, :39], cache=cache)[0], grouped(ids[:, 39:], cache=cache)[0]]
    torch.testing.assert_close(torch.cat(stepped, 1), full(ids)[0], atol=CACHE_TOLERANCE, rtol=0)


def test_configs_without_kv_heads_are_full_attention() -> None:
    old = {k: v for k, v in _config().to_json().items() if k != "n_kv_head"}
    assert ModelConfig.from_json(old).kv_heads == 4
    with pytest.raises(ValueError, match="divide evenly"):
        _config(3)


def test_an_uninitialised_build_draws_no_random_numbers() -> None:
    # checkpoints load into a model built without initialisation: same buffers and tied head,
    # no random draws (the generator's state is untouched), and nothing leaks past the build
    config = PRESETS["tiny"].config(VOCAB)
    torch.manual_seed(0)
    initialised = build_model(config)
    state = torch.get_rng_state()
    empty = build_model(config, initialize=False)
    assert torch.equal(torch.get_rng_state(), state)
    assert empty.lm_head.weight is empty.embed.weight
    torch.testing.assert_close(empty.rope_cos, initialised.rope_cos, rtol=0, atol=0)
    torch.testing.assert_close(empty.rope_sin, initialised.rope_sin, rtol=0, atol=0)
    assert set(empty.state_dict()) == set(initialised.state_dict())
    torch.manual_seed(0)
    again = build_model(config)
    for name, tensor in initialised.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


def test_kv_cache_logits_equal_full_recompute(model: StoryModel) -> None:
    ids = torch.randint(0, 500, (2, 60))
    full, _ = model(ids)
    cache = model.new_cache(batch=2)
    chunks = [model(ids[:, :25], cache=cache)[0], model(ids[:, 25:40], cache=cache)[0]]
    chunks += [model(ids[:, i : i + 1], cache=cache)[0] for i in range(40, 60)]
    cached = torch.cat(chunks, dim=1)
    assert cache.length == 60
    torch.testing.assert_close(cached, full, atol=CACHE_TOLERANCE, rtol=0)


def test_last_only_gives_final_position(model: StoryModel) -> None:
    ids = torch.randint(0, 500, (1, 30))
    full, _ = model(ids)
    last, _ = model(ids, last_only=True)
    assert last.shape == (1, 1, 500)
    torch.testing.assert_close(last[:, 0], full[:, -1], atol=CACHE_TOLERANCE, rtol=0)


def test_last_only_prefill_still_fills_the_whole_cache(model: StoryModel) -> None:
    # the last block finishes only the final position, but every position's keys and values
    # must reach the cache: the logits after it, one token or a chunk, equal a full recompute
    ids = torch.randint(0, 500, (2, 50))
    full, _ = model(ids)
    cache = model.new_cache(batch=2)
    first, _ = model(ids[:, :30], cache=cache, last_only=True)
    one, _ = model(ids[:, 30:31], cache=cache, last_only=True)
    chunk, _ = model(ids[:, 31:50], cache=cache, last_only=True)
    assert cache.length == 50 and chunk.shape == (2, 1, 500)
    for got, position in ((first, 29), (one, 30), (chunk, 49)):
        torch.testing.assert_close(got[:, 0], full[:, position], atol=CACHE_TOLERANCE, rtol=0)
    reference = model.new_cache(batch=2)
    model(ids, cache=reference)
    for layer in range(model.config.n_layer):
        torch.testing.assert_close(cache.keys[layer][:, :, :50], reference.keys[layer][:, :, :50])
        torch.testing.assert_close(
            cache.values[layer][:, :, :50], reference.values[layer][:, :, :50]
        )


def test_last_only_is_ignored_when_training_on_targets(model: StoryModel) -> None:
    ids = torch.randint(0, 500, (1, 20))
    targets = torch.randint(0, 500, (1, 20))
    logits, loss = model(ids, targets, last_only=True)
    _, reference_loss = model(ids, targets)
    assert logits.shape == (1, 20, 500)
    torch.testing.assert_close(loss, reference_loss)


def test_future_tokens_do_not_change_past_logits(model: StoryModel) -> None:
    ids = torch.randint(0, 500, (1, 40))
    changed = ids.clone()
    changed[0, 30:] = (changed[0, 30:] + 1) % 500
    a, _ = model(ids)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :30], b[:, :30])
    assert not torch.allclose(a[:, 30:], b[:, 30:])


def test_loss_ignores_masked_targets(model: StoryModel) -> None:
    ids = torch.randint(0, 500, (1, 20))
    targets = torch.randint(0, 500, (1, 20))
    _, loss_all = model(ids, targets)
    masked = targets.clone()
    masked[0, :10] = -100
    logits, loss_masked = model(ids, masked)
    expected = torch.nn.functional.cross_entropy(logits[0, 10:], targets[0, 10:])
    torch.testing.assert_close(loss_masked, expected)
    assert not torch.isclose(loss_all, loss_masked)


def test_block_size_is_enforced(model: StoryModel) -> None:
    with pytest.raises(ValueError, match="exceed the block size"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_embeddings_are_tied(model: StoryModel) -> None:
    assert model.lm_head.weight.data_ptr() == model.embed.weight.data_ptr()
