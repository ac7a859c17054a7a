"""CPU precisions for generation: how the weights are stored and multiplied.

Decoding one token reads every weight once, so its speed is set by bytes per weight:
``fp32`` (4, the reference), ``bf16`` (2; AVX512-BF16 matmuls) and ``int8`` (1; per-channel int8
weights times dynamically quantised activations through fbgemm's VNNI kernels, which also make
the 1,000-token prefill fastest). ``bench/bench_generate.py`` measures all three and the loss gap
each costs on real text; ``DEFAULT_PRECISION`` is the winner.
"""

from __future__ import annotations

import copy
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
    """A copy whose ``nn.Linear`` layers (the tied output head too) become ``Int8Linear``.

    Embeddings stay fp32: a lookup reads one row, so they cost nothing per token.
    """
    model = copy.deepcopy(model)
    reduce_range = not _has_vnni()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, Int8Linear(child, reduce_range))
    return model


class Int8Linear(nn.Module):
    """``nn.Linear`` with per-channel symmetric int8 weights, run by fbgemm's dynamic kernel.

    Each call quantises its input to 8 bits on the fly and multiplies in int8 (VNNI), then
    rescales: a quarter of fp32's bytes per weight. Calling the operator directly skips the
    generic quantised module's per-call checks (about a millisecond per token over 37 layers).
    """

    def __init__(self, linear: nn.Linear, reduce_range: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # CPUs without VNNI sum pairs of products in int16: 7-bit inputs keep that from saturating
        self.reduce_range = reduce_range
        weight = linear.weight.detach().float()
        scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
        zero_points = torch.zeros(len(scales), dtype=torch.long)
        bias = None if linear.bias is None else linear.bias.detach().float()
        with warnings.catch_warnings():  # quantised tensors are marked deprecated; fbgemm is not
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(qweight, bias)

    def weight(self) -> torch.Tensor:
        """The int8 weight (a quantised tensor), as the standard quantised Linear offers it."""
        return torch.ops.quantized.linear_unpack(self._packed)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x, self._packed, self.reduce_range)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def _has_vnni() -> bool:
    """Whether fbgemm can multiply full 8-bit inputs exactly (AVX512-VNNI on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and "avx512_vnni" in line for line in f)
    except OSError:
        return False


def kv_cache_dtype(precision: str) -> torch.dtype:
    """The KV cache stays fp32 at every precision.

    CPU attention for one query over a long cache runs faster in fp32 than in bf16 (the bf16
    kernels convert block by block), and fp32 keys keep long contexts exact.
    """
    return torch.float32
