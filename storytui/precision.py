"""CPU precisions for generation: how the weights are stored and multiplied.

Decoding one token reads every weight once, so its speed is set by bytes per weight:
``fp32`` (4, the reference), ``bf16`` (2; AVX512-BF16 matmuls), ``int8`` (1; per-channel int8
weights times dynamically quantised activations through fbgemm's VNNI kernels, which also make
the 1,000-token prefill fastest) and ``int4`` (about 0.53: groups of 128 four-bit weights with
a bf16 scale and offset for decoding, the int8 kernels for encoding). ``bench/bench_generate.py``
measures them all and the loss gap each costs on real text; ``DEFAULT_PRECISION`` is the winner
on the kind of CPU it was measured on.
"""

from __future__ import annotations

import copy
import platform
import warnings
from collections.abc import Callable

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "int8", "int4")


def default_precision() -> str:
    """The fastest precision that stays faithful, as bench/bench_generate.py measured it: int4
    on x86 CPUs with AVX-512; int8 elsewhere, where the int4 kernel runs other code paths that
    were not measured (Windows builds of torch compile its vector paths out)."""
    avx512 = torch.backends.cpu.get_cpu_capability() == "AVX512"
    return "int4" if avx512 and platform.system() != "Windows" else "int8"


DEFAULT_PRECISION = default_precision()
# Chosen by bench/bench_int4.py: decode speed and loss gap per group size, and where the int8
# kernel overtakes the int4 one as rows are added.
INT4_GROUP_SIZES = (128, 64, 32)  # weights sharing a scale and offset; the first that divides
INT4_MAX_ROWS = 1  # inputs with more rows (prefill, encode-ahead) take the int8 kernel
INT4_KERNEL_GROUP_SIZES = (32, 64, 128, 256)  # what the kernel accepts


def prepare_model(model: nn.Module, precision: str) -> nn.Module:
    """The model in eval mode at ``precision`` (int8 and int4 return a quantised copy)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    model = model.eval()
    if precision == "bf16":
        return to_bf16_weights(model)
    if precision == "int8":
        return quantize_int8(model.float())
    if precision == "int4":
        return quantize_int4(model.float())
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
    reduce_range = not _has_vnni()
    return _replace_linears(model, lambda linear: Int8Linear(linear, reduce_range))


def quantize_int4(model: nn.Module, group_sizes: tuple[int, ...] = INT4_GROUP_SIZES) -> nn.Module:
    """A copy whose ``nn.Linear`` layers become ``Int4Linear`` where the int4 kernel takes
    them, else ``Int8Linear``: layers with a bias, and the seed models' 50,257-token head."""
    reduce_range = not _has_vnni()

    def convert(linear: nn.Linear) -> nn.Module:
        if int4_group_size(linear, group_sizes) is None:
            return Int8Linear(linear, reduce_range)
        return Int4Linear(linear, reduce_range, group_sizes)

    return _replace_linears(model, convert)


def _replace_linears(model: nn.Module, convert: Callable[[nn.Linear], nn.Module]) -> nn.Module:
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, convert(child))
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

    def decode_weight_bytes(self) -> int:
        """Bytes one decoded token reads: an int8 per weight, a scale and zero point per row."""
        return self.in_features * self.out_features + 8 * self.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x, self._packed, self.reduce_range)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def int4_group_size(linear: nn.Linear, sizes: tuple[int, ...] = INT4_GROUP_SIZES) -> int | None:
    """The first of ``sizes`` the int4 kernel can pack ``linear`` with, or None: it takes no
    bias, a multiple of 16 output rows, and input columns that the group size divides."""
    if linear.bias is not None or linear.out_features % 16:
        return None
    usable = (g for g in sizes if g in INT4_KERNEL_GROUP_SIZES and linear.in_features % g == 0)
    return next(usable, None)


def quantize_int4_groups(
    weight: torch.Tensor, group_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Round each group of ``group_size`` weights in a row to 16 levels between its min and max.

    Returns the levels (int32, 0–15, shape of ``weight``), and each group's scale and minimum,
    (rows, groups): weight ≈ level × scale + minimum.
    """
    rows, cols = weight.shape
    groups = weight.float().reshape(rows, cols // group_size, group_size)
    low = groups.amin(dim=-1, keepdim=True)
    scale = ((groups.amax(dim=-1, keepdim=True) - low) / 15).clamp(min=1e-10)
    levels = ((groups - low) / scale).round_().clamp_(0, 15).to(torch.int32)
    return levels.reshape(rows, cols), scale.squeeze(-1), low.squeeze(-1)


class Int4Linear(nn.Module):
    """``nn.Linear`` with four-bit weights for decoding and int8 ones for encoding.

    Decoding reads every weight once per token, so halving int8's bytes is the bigger lever:
    ``_weight_int4pack_mm_for_cpu`` multiplies bf16 inputs by groups of 128 four-bit weights
    (64 or 32 where 128 does not divide the inputs), each group with a bf16 scale and offset:
    0.53 bytes read per weight. It dequantises to bf16, so it only wins on one row: fbgemm's
    int8 VNNI kernel is already as fast at two rows and 2.3× faster at 16. The layer keeps int8
    weights for those, so it holds about 1.53 bytes per weight (each call reads one of the
    two). The cached and the full forward pass may therefore round differently.
    """

    def __init__(
        self,
        linear: nn.Linear,
        reduce_range: bool = True,
        group_sizes: tuple[int, ...] = INT4_GROUP_SIZES,
    ) -> None:
        super().__init__()
        group_size = int4_group_size(linear, group_sizes)
        if group_size is None:
            raise ValueError(f"no int4 packing for a {tuple(linear.weight.shape)} weight")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.group_size = group_size
        self.max_int4_rows = INT4_MAX_ROWS  # the loss-gap bench raises it to test int4 alone
        levels, scale, low = quantize_int4_groups(linear.weight.detach(), group_size)
        # the kernel's convention: weight = (level - 8) × scale + zero
        zero = low + 8 * scale
        self._packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(levels, 1)
        # (groups, rows, 2): scale and zero of each group of each row
        self._scale_zero = torch.stack((scale.t(), zero.t()), dim=-1).contiguous().bfloat16()
        self.prefill = Int8Linear(linear, reduce_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() > self.max_int4_rows * self.in_features:
            return self.prefill(x)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x.reshape(-1, self.in_features).bfloat16().contiguous(),
            self._packed,
            self.group_size,
            self._scale_zero,
        )
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def decode_weight_bytes(self) -> int:
        """Bytes one decoded token reads: half a byte per weight, 4 per group (scale, zero)."""
        groups = self.in_features // self.group_size
        return self.in_features * self.out_features // 2 + 4 * groups * self.out_features

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"int4 (groups of {self.group_size}; int8 for more than {self.max_int4_rows} rows)"
        )


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
