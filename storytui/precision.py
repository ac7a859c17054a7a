"""CPU precisions for generation: how the weights are stored and multiplied.

Decoding one token reads every weight once, so its speed is set by bytes per weight:
``fp32`` (4, the reference), ``bf16`` (2; AVX512-BF16 matmuls) and ``int8`` (1; per-channel int8
weights times dynamically quantised activations through fbgemm's VNNI kernels, which also make
the 1,000-token prefill fastest). ``bench/bench_generate.py`` measures all three and the loss gap
each costs on real text; ``DEFAULT_PRECISION`` is the winner.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "int8")
# Chosen by bench/bench_generate.py: see the table in bench/README.md.
DEFAULT_PRECISION = "int8"


def prepare_model(model: nn.Module, precision: str) -> nn.Module:
    """The model in eval mode at ``precision`` (int8 returns a quantised copy)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    model = model.eval()
    if precision == "bf16":
        return to_bf16_weights(model)
    if precision == "int8":
        return quantize_int8(model.float())
    return model.float()


def to_bf16_weights(model: nn.Module) -> nn.Module:
    """Cast the parameters to bf16 in place; buffers (the rotary tables) keep fp32 accuracy."""
    for param in model.parameters():  # a tied weight is one parameter: it stays tied
        param.data = param.data.to(torch.bfloat16)
    return model


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy whose ``nn.Linear`` layers (the tied output head too) hold per-channel int8 weights.

    Embeddings stay fp32: a lookup reads one row, so they cost nothing per token.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # the eager API is marked deprecated but is the fast kernel
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


def kv_cache_dtype(precision: str) -> torch.dtype:
    """The KV cache stays fp32 at every precision.

    CPU attention for one query over a long cache runs faster in fp32 than in bf16 (the bf16
    kernels convert block by block), and fp32 keys keep long contexts exact.
    """
    return torch.float32
