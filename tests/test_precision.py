"""Reduced precisions: the int4 layers' rounding, kernels, fallbacks and what they cost."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from storytui.model import ModelConfig, StoryModel
from storytui.precision import (
    INT4_MAX_ROWS,
    Int4Linear,
    Int8Linear,
    default_precision,
    int4_group_size,
    prepare_model,
    quantize_int4_groups,
)


def _linear(out_features: int, in_features: int, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    linear = nn.Linear(in_features, out_features, bias=False)
    nn.init.normal_(linear.weight, std=0.02)
    return linear


def _dequantized(linear: nn.Linear) -> torch.Tensor:
    """The weight Int4Linear stores, rebuilt from the same rounding (its scales and offsets
    are then kept in bf16, which the tests' tolerances allow for)."""
    group_size = int4_group_size(linear)
    levels, scale, low = quantize_int4_groups(linear.weight.detach(), group_size)
    rows, cols = levels.shape
    grouped = levels.reshape(rows, cols // group_size, group_size).float()
    return (grouped * scale[..., None] + low[..., None]).reshape(rows, cols)


def test_int4_rounding_keeps_each_group_within_half_a_step() -> None:
    weight = torch.randn(32, 128)
    levels, scale, low = quantize_int4_groups(weight, 64)
    assert levels.dtype == torch.int32 and int(levels.min()) == 0 and int(levels.max()) == 15
    assert scale.shape == low.shape == (32, 2)
    rebuilt = (levels.reshape(32, 2, 64) * scale[..., None] + low[..., None]).reshape(32, 128)
    step = scale.repeat_interleave(64, dim=1)
    assert torch.all((rebuilt - weight).abs() <= step / 2 + 1e-6)
    groups = weight.reshape(32, 2, 64)  # each group's extremes are levels 0 and 15: exact
    assert torch.allclose(low, groups.amin(-1))
    assert torch.allclose(low + 15 * scale, groups.amax(-1), atol=1e-6)


def test_group_size_follows_the_kernel_rules() -> None:
    assert int4_group_size(_linear(1280, 768)) == 128
    assert int4_group_size(_linear(1280, 768), (64, 32)) == 64  # the first that divides
    assert int4_group_size(_linear(1280, 320)) == 64
    assert int4_group_size(_linear(1280, 768), (16, 32)) == 32  # the kernel takes no 16
    assert int4_group_size(_linear(96, 32)) == 32  # 32 columns: groups of 32
    assert int4_group_size(_linear(50257, 64)) is None  # the GPT-2 vocabulary: rows % 16
    assert int4_group_size(_linear(96, 40)) is None  # 40 columns fit no group size
    assert int4_group_size(nn.Linear(64, 32, bias=True)) is None


def test_one_row_runs_the_int4_kernel_on_the_rounded_weights() -> None:
    linear = _linear(1280, 768)
    layer = Int4Linear(linear)
    x = torch.randn(1, 1, 768)
    expected = x.bfloat16().float() @ _dequantized(linear).t()
    got = layer(x)
    assert got.shape == (1, 1, 1280) and got.dtype == torch.float32
    # bf16 inputs, fp32 sums, a bf16 result: within a few bf16 steps of the exact product
    assert torch.allclose(got, expected, rtol=2e-2, atol=2e-3 * expected.abs().max().item())
    strided = torch.randn(1, 1, 2 * 768).bfloat16()[..., ::2]  # every other value: strided
    assert torch.equal(layer(strided), layer(strided.contiguous()))
    exact = x @ linear.weight.detach().t()
    assert (got - exact).norm() / exact.norm() < 0.15  # four bits: about 8% on Gaussian weights


def test_more_rows_take_the_int8_kernel() -> None:
    linear = _linear(96, 64)
    layer = Int4Linear(linear)
    rows = torch.randn(1, INT4_MAX_ROWS + 1, 64)
    assert torch.equal(layer(rows), Int8Linear(linear)(rows))
    few = torch.randn(1, INT4_MAX_ROWS, 64)
    assert not torch.equal(layer(few), Int8Linear(linear)(few))


def test_int4_reads_about_half_a_byte_per_weight_with_its_scales() -> None:
    layer = Int4Linear(_linear(4864, 768))
    per_weight = layer.decode_weight_bytes() / (4864 * 768)
    assert per_weight == pytest.approx(0.5 + 4 / 128)
    assert Int8Linear(_linear(4864, 768)).decode_weight_bytes() > 1.7 * layer.decode_weight_bytes()


def test_int4_model_keeps_int8_where_the_kernel_cannot_pack() -> None:
    config = ModelConfig(
        vocab_size=500, block_size=32, n_layer=1, n_head=2, n_embd=64, mlp_hidden=128
    )  # 500 vocabulary rows are not a multiple of 16
    torch.manual_seed(0)
    model = prepare_model(StoryModel(config), "int4")
    assert isinstance(model.blocks[0].mlp.gate_up, Int4Linear)
    assert isinstance(model.lm_head, Int8Linear)


def test_int4_decoding_stays_close_to_fp32() -> None:
    """The cached one-token steps run the int4 kernel; their logits stay near fp32's."""
    config = ModelConfig(
        vocab_size=512, block_size=64, n_layer=2, n_head=4, n_embd=64, mlp_hidden=128, n_kv_head=2
    )
    torch.manual_seed(0)
    reference = StoryModel(config).eval()
    ids = torch.randint(0, 512, (1, 24))

    def decode(model: nn.Module) -> list[torch.Tensor]:
        cache = model.new_cache(1, dtype=torch.float32)
        model(ids[:, :16], cache=cache)  # prefill: int8 in both quantised models
        return [model(ids[:, t : t + 1], cache=cache)[0][0, -1] for t in range(16, 24)]

    with torch.inference_mode():
        full, _ = reference(ids)
        int4_steps = decode(prepare_model(reference, "int4"))
        int8_steps = decode(prepare_model(reference, "int8"))
    for t, logits in zip(range(16, 24), int4_steps, strict=True):
        similarity = torch.cosine_similarity(logits, full[0, t], dim=0)
        assert similarity > 0.99, (t, similarity)
    # the steps took the int4 kernel, not the int8 layers every Int4Linear also holds
    assert not any(torch.allclose(a, b) for a, b in zip(int4_steps, int8_steps, strict=True))


@pytest.mark.parametrize(
    ("capability", "system", "expected"),
    [
        ("AVX512", "Linux", "int4"),
        ("AVX512", "Darwin", "int4"),
        ("AVX512", "Windows", "int8"),  # torch's Windows builds run the int4 kernel unvectorised
        ("AVX2", "Linux", "int8"),  # the int4 kernel's AVX2 path was not measured
        ("DEFAULT", "Linux", "int8"),
    ],
)
def test_int4_is_the_default_only_where_it_was_measured(
    monkeypatch, capability: str, system: str, expected: str
) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr("storytui.precision.platform.system", lambda: system)
    assert default_precision() == expected
