"""The ONNX Runtime decoder: its int4 rounding, its graph against StoryModel, the shared cache."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from storytui.model import ModelConfig, StoryModel
from storytui.onnx_decoder import OnnxDecoder, group_size, quantize_nbits

GQA = ModelConfig(
    vocab_size=300, block_size=64, n_layer=2, n_head=4, n_embd=64, mlp_hidden=96, n_kv_head=2
)


def _model(config: ModelConfig = GQA, seed: int = 0) -> StoryModel:
    torch.manual_seed(seed)
    return StoryModel(config).eval()


def _decode_steps(model, cache, ids: torch.Tensor, steps) -> list[torch.Tensor]:
    return [model(ids[:, t : t + 1], cache=cache)[0][0, -1] for t in steps]


def test_rounding_stays_within_half_a_step_and_keeps_zero_exact() -> None:
    torch.manual_seed(0)
    weight = torch.randn(48, 256)
    weight[0, :7] = 0.0
    nbits = quantize_nbits(weight, 64)
    assert nbits.packed.shape == (48, 4, 32) and nbits.scale.shape == (48 * 4,)
    assert nbits.zero.shape == (48 * 2,)  # four groups: two bytes of zero points a row
    assert nbits.nbytes == 48 * 256 // 2 + 48 * 4 * 4 + 48 * 2
    # MatMulNBits' layout by hand: two levels a byte, the first in the low nibble
    packed = torch.from_numpy(nbits.packed)
    levels = torch.stack((packed & 15, packed >> 4), dim=-1).reshape(48, 4, 64).float()
    assert torch.equal(levels[..., 0], (packed[..., 0] & 15).float())
    zero_bytes = torch.from_numpy(nbits.zero).reshape(48, 2)
    zeros = torch.stack((zero_bytes & 15, zero_bytes >> 4), dim=-1).reshape(48, 4).float()
    scales = torch.from_numpy(nbits.scale).reshape(48, 4)
    rounded = ((levels - zeros[..., None]) * scales[..., None]).reshape(48, 256)
    assert torch.equal(nbits.dequantized(), rounded)
    step = scales.repeat_interleave(64, dim=1)
    assert torch.all((rounded - weight).abs() <= step / 2 + 1e-6)
    assert torch.all(rounded[0, :7] == 0)  # zero is a level: padding and dead weights stay 0


def test_an_odd_number_of_groups_pads_the_zero_points() -> None:
    weight = torch.randn(16, 96)
    nbits = quantize_nbits(weight, 32)  # three groups a row: the fourth zero point is padding
    assert nbits.zero.shape == (16 * 2,)
    assert (nbits.dequantized() - weight).abs().max() < nbits.scale.max()


def test_group_size_is_the_first_that_divides() -> None:
    assert group_size(768) == 128
    assert group_size(2432) == 128
    assert group_size(96) == 32
    assert group_size(768, (64, 32)) == 64
    with pytest.raises(ValueError):
        group_size(40)


@pytest.mark.parametrize(
    "config",
    [
        GQA,
        ModelConfig(vocab_size=200, block_size=32, n_layer=2, n_head=2, n_embd=32, mlp_hidden=96),
    ],
    ids=["grouped-query", "one-kv-head-per-query-head"],
)
def test_graph_equals_the_model_step_for_step(config: ModelConfig) -> None:
    """Without quantisation the graph's norms, rotary positions, attention over the cache and
    MLP give StoryModel's own logits and cache entries (to float rounding)."""
    model = _model(config)
    decoder = OnnxDecoder(model, quantize=False)
    ids = torch.randint(0, config.vocab_size, (1, 20))
    with torch.inference_mode():
        ours, theirs = model.new_cache(), model.new_cache()
        model(ids[:, :12], cache=ours)
        model(ids[:, :12], cache=theirs)
        for t in range(12, 20):
            expected, _ = model(ids[:, t : t + 1], cache=theirs)
            got = decoder.step(model.embed(ids[:, t : t + 1]), ours)
            ours.length += 1
            assert got.shape == (1, 1, config.vocab_size)
            assert torch.allclose(got, expected, atol=1e-4), (t, (got - expected).abs().max())
        for layer in range(config.n_layer):
            assert torch.allclose(
                ours.keys[layer][:, :, :20], theirs.keys[layer][:, :, :20], atol=1e-5
            )
            assert torch.allclose(
                ours.values[layer][:, :, :20], theirs.values[layer][:, :, :20], atol=1e-5
            )


def test_int4_steps_follow_the_rounded_weights() -> None:
    """The int4 graph equals the model with its weights rounded as quantize_nbits rounds them,
    up to the int8 rounding of the activations (the kernel's dot products are in int8)."""
    model = _model()
    rounded = copy.deepcopy(model)
    for layer in rounded.modules():
        if isinstance(layer, nn.Linear):
            nbits = quantize_nbits(layer.weight, group_size(layer.in_features))
            layer.weight.data = nbits.dequantized()
    decoder = OnnxDecoder(model)
    ids = torch.randint(0, GQA.vocab_size, (1, 16))
    with torch.inference_mode():
        ours, theirs = rounded.new_cache(), rounded.new_cache()
        rounded(ids[:, :8], cache=ours)
        rounded(ids[:, :8], cache=theirs)
        unrounded = model.new_cache()
        model(ids[:, :8], cache=unrounded)
        for t in range(8, 16):
            expected, _ = rounded(ids[:, t : t + 1], cache=theirs)
            got = decoder.step(rounded.embed(ids[:, t : t + 1]), ours)[0, -1]
            ours.length += 1
            exact, _ = model(ids[:, t : t + 1], cache=unrounded)
            to_rounded = torch.cosine_similarity(got, expected[0, -1], dim=0)
            to_exact = torch.cosine_similarity(got, exact[0, -1], dim=0)
            assert to_rounded > 0.9999
            assert to_rounded > to_exact  # it follows the four-bit weights, not the originals


def test_encoder_and_decoder_take_turns_on_one_cache() -> None:
    """PyTorch encodes, ONNX Runtime decodes, PyTorch encodes a chunk after that, the cache is
    rewound and decoded again, and a second cache is bound and unbound: every logit matches
    a model that did it all alone."""
    model = _model()
    decoder = OnnxDecoder(model, quantize=False)

    def mixed_step(cache, ids, t):
        logits = decoder.step(model.embed(ids[:, t : t + 1]), cache)
        cache.length += 1
        return logits[0, -1]

    ids = torch.randint(0, GQA.vocab_size, (1, 40))
    with torch.inference_mode():
        alone = model.new_cache()
        model(ids[:, :10], cache=alone)
        expected = _decode_steps(model, alone, ids, range(10, 15))
        expected.append(model(ids[:, 15:20], cache=alone)[0][0, -1])
        expected += _decode_steps(model, alone, ids, range(20, 23))

        mixed, other = model.new_cache(), model.new_cache()
        model(ids[:, :10], cache=mixed)
        got = [mixed_step(mixed, ids, t) for t in range(10, 13)]
        model(ids[:, :30], cache=other)  # another cache takes the binding in between
        assert torch.allclose(mixed_step(other, ids, 30), model(ids[:, :31])[0][0, -1], atol=1e-4)
        got += [mixed_step(mixed, ids, t) for t in range(13, 15)]
        got.append(model(ids[:, 15:20], cache=mixed)[0][0, -1])
        got += [mixed_step(mixed, ids, t) for t in range(20, 23)]
        for t, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert torch.allclose(a, b, atol=1e-4), t

        mixed.length = 12  # rewind: the next step overwrites position 12
        alone.length = 12
        again = mixed_step(mixed, ids.flip(1), 12)
        assert torch.allclose(again, _decode_steps(model, alone, ids.flip(1), [12])[0], atol=1e-4)


def test_the_decoder_refuses_what_it_cannot_run() -> None:
    model = _model()
    decoder = OnnxDecoder(model, quantize=False)
    with pytest.raises(ValueError, match="one token"):
        decoder.step(torch.zeros(1, 2, GQA.n_embd), model.new_cache())
    with pytest.raises(ValueError, match="fp32 KV cache"):
        decoder.step(torch.zeros(1, 1, GQA.n_embd), model.new_cache(dtype=torch.bfloat16))
    good = model.new_cache()
    with torch.inference_mode():
        model(torch.zeros(1, 3, dtype=torch.long), cache=good)
        before = decoder.step(model.embed(torch.tensor([[7]])), good)
        with pytest.raises(ValueError, match="fp32 KV cache"):
            decoder.step(torch.zeros(1, 1, GQA.n_embd), model.new_cache(dtype=torch.bfloat16))
        after = decoder.step(model.embed(torch.tensor([[7]])), good)  # still bound to `good`
    assert torch.equal(before, after)
    full = model.new_cache(max_len=4)
    full.length = 4
    with pytest.raises(ValueError, match="cache is full"):
        decoder.step(torch.zeros(1, 1, GQA.n_embd), full)
    with pytest.raises(ValueError, match="2 rows"):
        decoder.step(torch.zeros(2, 1, GQA.n_embd), model.new_cache())


def test_a_cache_whose_tensors_are_replaced_is_bound_again() -> None:
    model = _model()
    decoder = OnnxDecoder(model, quantize=False)
    token = torch.tensor([[11]])
    with torch.inference_mode():
        cache = model.new_cache()
        model(torch.arange(5).view(1, 5), cache=cache)
        first = decoder.step(model.embed(token), cache)
        cache.keys = [k.clone() for k in cache.keys]  # the old tensors are freed
        cache.values = [v.clone() for v in cache.values]
        again = decoder.step(model.embed(token), cache)
        for k in cache.keys:
            k.zero_()  # the graph must read the new tensors: zeroed keys change the result
        zeroed = decoder.step(model.embed(token), cache)
    assert torch.allclose(first, again, atol=1e-6)
    assert not torch.allclose(first, zeroed, atol=1e-3)
