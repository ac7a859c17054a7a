"""Reduced precisions: which engine runs each call at int4, what it costs, and the default."""

from __future__ import annotations

import pytest
import torch

from storytui.model import ModelConfig, StoryModel
from storytui.onnx_decoder import OnnxDecoder
from storytui.precision import (
    Int4Model,
    Int8Linear,
    bf16_copy,
    default_precision,
    encoder_precision,
    prepare_model,
    to_bf16_weights,
)

CONFIG = ModelConfig(
    vocab_size=512, block_size=32, n_layer=2, n_head=4, n_embd=64, mlp_hidden=128, n_kv_head=2
)


def _model(config: ModelConfig = CONFIG) -> StoryModel:
    torch.manual_seed(0)
    return StoryModel(config).eval()


def test_int4_encodes_with_int8_and_decodes_through_onnx_runtime(monkeypatch) -> None:
    monkeypatch.setattr("storytui.precision._has_amx", lambda: False)
    reference = _model()
    int4, int8 = prepare_model(reference, "int4"), prepare_model(reference, "int8")
    assert isinstance(int4, Int4Model) and isinstance(int4.decoder, OnnxDecoder)
    assert isinstance(int4.encoder.blocks[0].mlp.gate_up, Int8Linear)
    ids = torch.randint(0, 512, (1, 24))
    with torch.inference_mode():
        full, _ = reference(ids)
        assert torch.equal(int4(ids)[0], int8(ids)[0])  # no cache: the int8 encoder
        c4, c8 = int4.new_cache(), int8.new_cache()
        assert torch.equal(int4(ids[:, :16], cache=c4)[0], int8(ids[:, :16], cache=c8)[0])
        assert c4.length == 16
        for t in range(16, 24):
            step4, _ = int4(ids[:, t : t + 1], cache=c4)
            step8, _ = int8(ids[:, t : t + 1], cache=c8)
            assert c4.length == t + 1
            assert not torch.allclose(step4, step8)  # the step ran the int4 graph
            assert torch.cosine_similarity(step4[0, -1], full[0, t], dim=0) > 0.99


@pytest.mark.parametrize(("amx", "expected"), [(True, "bf16"), (False, "int8")])
def test_int4_encodes_in_bf16_only_where_amx_tiles_multiply_it(
    monkeypatch, amx: bool, expected: str
) -> None:
    monkeypatch.setattr("storytui.precision._has_amx", lambda: amx)
    assert encoder_precision() == expected
    int4 = prepare_model(_model(), "int4")
    assert isinstance(int4, Int4Model) and int4.encoder_precision == expected
    gate_up = int4.encoder.blocks[0].mlp.gate_up
    if expected == "bf16":
        assert gate_up.weight.dtype == torch.bfloat16
    else:
        assert isinstance(gate_up, Int8Linear)


def test_the_bf16_encoder_fills_a_cache_the_int4_decoder_continues() -> None:
    reference = _model()
    before = {name: p.clone() for name, p in reference.state_dict().items()}
    int4 = Int4Model(reference, encoder="bf16")
    encoder = int4.encoder
    assert all(p.dtype == torch.bfloat16 for p in encoder.parameters())
    assert encoder.lm_head.weight is encoder.embed.weight  # still tied
    assert all(torch.equal(p, before[n]) for n, p in reference.state_dict().items())
    ids = torch.randint(0, 512, (1, 24))
    with torch.inference_mode():
        full, _ = reference(ids)
        cache = int4.new_cache()
        assert all(t.dtype == torch.float32 for t in (*cache.keys, *cache.values))
        encoded, _ = int4(ids[:, :16], cache=cache)
        assert encoded.dtype == torch.bfloat16 and cache.length == 16
        similarity = torch.cosine_similarity(encoded[0].float(), full[0, :16], dim=-1)
        assert similarity.min() > 0.999  # bf16 rounding only: closer to fp32 than int8 is
        for t in range(16, 24):
            step, _ = int4(ids[:, t : t + 1], cache=cache)
            assert step.dtype == torch.float32 and cache.length == t + 1
            assert torch.cosine_similarity(step[0, -1], full[0, t], dim=0) > 0.99


def test_a_bf16_copy_of_a_bf16_model_is_still_a_copy() -> None:
    source = to_bf16_weights(_model())
    copied = bf16_copy(source)
    assert copied.embed.weight.data_ptr() != source.embed.weight.data_ptr()
    with torch.no_grad():
        copied.embed.weight.zero_()
    assert source.embed.weight.abs().sum() > 0


def test_the_int4_encoder_must_be_int8_or_bf16() -> None:
    with pytest.raises(ValueError, match="int8 or bf16"):
        Int4Model(_model(), encoder="fp16")


def test_int4_steps_stop_at_the_block_size() -> None:
    int4 = prepare_model(_model(), "int4")
    cache = int4.new_cache()
    with torch.inference_mode():
        int4(torch.zeros(1, CONFIG.block_size, dtype=torch.long), cache=cache)
        with pytest.raises(ValueError, match="block size"):
            int4(torch.zeros(1, 1, dtype=torch.long), cache=cache)


def test_int4_reads_about_half_a_byte_per_weight() -> None:
    config = ModelConfig(
        vocab_size=1024, block_size=32, n_layer=1, n_head=4, n_embd=256, mlp_hidden=512
    )
    model = _model(config)
    matrices = sum(p.numel() for p in model.parameters() if p.dim() == 2)  # the head is tied
    per_weight = prepare_model(model, "int4").decode_weight_bytes() / matrices
    assert per_weight == pytest.approx(0.5 + 4 / 128 + 0.5 / 128)  # levels, scale, zero point


def test_int4_falls_back_to_int8_where_the_graph_cannot_run(monkeypatch) -> None:
    odd = ModelConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=40, mlp_hidden=72)
    model = prepare_model(_model(odd), "int4")  # 40 and 72 inputs: no int4 group size divides
    assert not isinstance(model, Int4Model)
    assert isinstance(model.blocks[0].mlp.down, Int8Linear)
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # a broken install
    model = prepare_model(_model(), "int4")
    assert not isinstance(model, Int4Model)
    assert isinstance(model.lm_head, Int8Linear)


def test_int4_falls_back_to_int8_where_onnx_runtime_is_found_but_fails_to_import(
    monkeypatch,
) -> None:
    def broken(*args, **kwargs):
        raise ImportError("libonnxruntime.so: cannot open shared object file")

    monkeypatch.setattr("storytui.onnx_decoder.new_session", broken)
    model = prepare_model(_model(), "int4")
    assert not isinstance(model, Int4Model)
    assert isinstance(model.lm_head, Int8Linear)


def test_other_architectures_get_int8_at_int4() -> None:
    from storytui.seed_model import SeedModel

    config = ModelConfig(
        vocab_size=100, block_size=16, n_layer=1, n_head=2, n_embd=32, mlp_hidden=64, arch="seed"
    )
    model = prepare_model(SeedModel(config), "int4")
    assert not isinstance(model, Int4Model)
    assert any(isinstance(m, Int8Linear) for m in model.modules())


@pytest.mark.parametrize(
    ("capability", "expected"),
    [
        ("AVX512", "int4"),
        ("AVX2", "int4"),
        ("DEFAULT", "int8"),  # x86 without AVX2, and Arm: ONNX Runtime's kernels not measured
        ("SVE256", "int8"),
    ],
)
def test_int4_is_the_default_only_where_it_was_measured(
    monkeypatch, capability: str, expected: str
) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert default_precision() == expected
