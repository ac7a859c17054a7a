"""int4 layers on torch's own kernel, for the transformers twin's int4 row.

storytui decodes int4 through ONNX Runtime (``storytui/onnx_decoder.py``); transformers cannot,
so the fairest int4 it gets is torch's ``_weight_int4pack_mm_for_cpu``: groups of 128 four-bit
weights with a bf16 scale and offset, on one-row inputs, and fbgemm's int8 kernel on more rows
(where it is faster). This is how storytui itself decoded int4 before its ONNX decoder.
"""

from __future__ import annotations

import torch
from torch import nn

from storytui.precision import Int8Linear, _has_vnni, _replace_linears

GROUP_SIZES = (128, 64, 32)  # the first that divides the inputs (the kernel's sizes)


def group_size(linear: nn.Linear) -> int | None:
    """The group size the kernel can pack ``linear`` with, or None: it takes no bias, a
    multiple of 16 output rows, and input columns the group size divides."""
    if linear.bias is not None or linear.out_features % 16:
        return None
    return next((g for g in GROUP_SIZES if linear.in_features % g == 0), None)


class TorchInt4Linear(nn.Module):
    """Four-bit weights through torch's int4 kernel for one row, int8 ones for more."""

    def __init__(self, linear: nn.Linear, reduce_range: bool) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.group_size = group_size(linear)
        rows, cols = linear.weight.shape
        groups = linear.weight.detach().float().reshape(rows, cols // self.group_size, -1)
        low = groups.amin(dim=-1, keepdim=True)
        scale = ((groups.amax(dim=-1, keepdim=True) - low) / 15).clamp(min=1e-10)
        levels = ((groups - low) / scale).round_().clamp_(0, 15).to(torch.int32)
        scale, low = scale.squeeze(-1), low.squeeze(-1)
        zero = low + 8 * scale  # the kernel's convention: weight = (level - 8) × scale + zero
        self._packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
            levels.reshape(rows, cols), 1
        )
        self._scale_zero = torch.stack((scale.t(), zero.t()), dim=-1).contiguous().bfloat16()
        self.prefill = Int8Linear(linear, reduce_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() > self.in_features:
            return self.prefill(x)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x.reshape(-1, self.in_features).bfloat16().contiguous(),
            self._packed,
            self.group_size,
            self._scale_zero,
        )
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def decode_weight_bytes(self) -> int:
        groups = self.in_features // self.group_size
        return self.in_features * self.out_features // 2 + 4 * groups * self.out_features


def quantize_torch_int4(model: nn.Module) -> nn.Module:
    """A copy whose linear layers are ``TorchInt4Linear`` where the kernel takes them, else
    ``Int8Linear``."""
    reduce_range = not _has_vnni()

    def convert(linear: nn.Linear) -> nn.Module:
        if group_size(linear) is None:
            return Int8Linear(linear, reduce_range)
        return TorchInt4Linear(linear, reduce_range)

    return _replace_linears(model, convert)
