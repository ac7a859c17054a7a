"""CPU precisions for generation: how the weights are stored and multiplied.

Decoding one token reads every weight once, so its speed is set by bytes per weight:
``fp32`` (4, the reference), ``bf16`` (2; AVX512-BF16 matmuls), ``int8`` (1; per-channel int8
weights times dynamically quantised activations through fbgemm's VNNI kernels) and ``int4``
(0.535: groups of 128 four-bit weights with a float scale and a four-bit zero point, decoded
through ONNX Runtime).
``bench/bench_generate.py`` measures them all and the loss gap each costs on real text;
``DEFAULT_PRECISION`` is the winner on the kind of CPU it was measured on.

Encoding a story (the prefill before the first token) is bound by arithmetic, not bytes: where
the CPU has AMX tiles, oneDNN's bf16 matmuls outrun fbgemm's int8 ones, so int4 encodes in
bf16 there and in int8 elsewhere.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "int8", "int4")


def default_precision() -> str:
    """The fastest precision that stays faithful, as bench/bench_generate.py measured it: int4
    on x86 CPUs with AVX-512 or AVX2 (decode 2.1-2.3x int8, loss gap under 0.01 nats);
    int8 elsewhere (Arm, older x86), where ONNX Runtime's int4 kernels run code paths that were
    not measured."""
    return "int4" if torch.backends.cpu.get_cpu_capability() in ("AVX512", "AVX2") else "int8"


DEFAULT_PRECISION = default_precision()


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


def bf16_copy(model: nn.Module) -> nn.Module:
    """A copy with bf16 parameters, made without a full-precision copy on the way (the memo
    hands deepcopy each parameter already cast; a tied weight is one parameter and stays tied)."""
    memo = {
        id(param): nn.Parameter(param.detach().to(torch.bfloat16, copy=True), requires_grad=False)
        for param in model.parameters()
    }
    return copy.deepcopy(model, memo)


def encoder_precision() -> str:
    """How int4 encodes: bf16 where AMX tiles multiply it (a cold 1,000-token first token in
    150-153 ms against 227-238 ms with int8, alternated, bench/README.md), else int8 (AVX-512
    BF16 without AMX encodes in bf16 about 1.4x slower than in int8)."""
    return "bf16" if _has_amx() else "int8"


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy whose ``nn.Linear`` layers (the tied output head too) become ``Int8Linear``.

    Embeddings stay fp32: a lookup reads one row, so they cost nothing per token.
    """
    reduce_range = not _has_vnni()
    return _replace_linears(model, lambda linear: Int8Linear(linear, reduce_range))


def quantize_int4(model: nn.Module) -> nn.Module:
    """An ``Int4Model`` where the decoding graph can run the model, else int8: other
    architectures (the seed models), widths no int4 group size divides, or an install whose
    ONNX Runtime or onnx is missing or fails to import (dependencies, so only a broken one)."""
    if not _int4_decodable(model):
        return quantize_int8(model)
    try:
        return Int4Model(model)
    except ImportError:  # not installed, or installed but broken (a missing shared library)
        return quantize_int8(model)


def _int4_decodable(model: nn.Module) -> bool:
    from storytui.onnx_decoder import GROUP_SIZES

    if getattr(model.config, "arch", None) != "storytui":
        return False
    widths = {m.in_features for m in model.modules() if isinstance(m, nn.Linear)}
    # a missing or broken onnx / ONNX Runtime shows as an ImportError in quantize_int4: onnx
    # takes a second to import, and a cached graph never needs it
    return not any(all(width % size for size in GROUP_SIZES) for width in widths)


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


class Int4Model(nn.Module):
    """A ``StoryModel`` that decodes with four-bit weights and encodes with int8 or bf16 ones.

    Decoding one token reads every weight once, so its bytes per weight set its speed: the
    ``OnnxDecoder`` runs the whole step in ONNX Runtime with 0.535 bytes per weight (int4
    groups of 128, int8 VNNI dot products). Encoding many tokens at once is bound by arithmetic
    instead: fbgemm's int8 kernels are fastest on most CPUs, oneDNN's bf16 ones where AMX tiles
    run them (``encoder_precision``). Both write the same fp32 ``KVCache``. Memory held: about
    1.54 bytes per weight with the int8 encoder (plus its fp32 embedding table), 2.54 with the
    bf16 one (each call reads one of the two copies), and the cached and the full forward pass
    round differently. A decoded token's embedding comes from the encoder's table, so with the
    bf16 encoder it is rounded to bf16 too (far finer than the int4 weights' own rounding).
    Not copyable: build another from the source model instead.
    """

    def __init__(
        self,
        model: nn.Module,
        group_sizes: tuple[int, ...] | None = None,
        encoder: str | None = None,
    ) -> None:
        super().__init__()
        from storytui.onnx_decoder import GROUP_SIZES, OnnxDecoder

        encoder = encoder or encoder_precision()
        if encoder not in ("int8", "bf16"):
            raise ValueError("the int4 model encodes in int8 or bf16")
        self.config = model.config
        self.decoder = OnnxDecoder(model, group_sizes=group_sizes or GROUP_SIZES)
        self.encoder = quantize_int8(model) if encoder == "int8" else bf16_copy(model)
        self.encoder_precision = encoder

    def new_cache(self, batch: int = 1, max_len: int | None = None, dtype=None):
        """A cache the decoder can bind: fp32 whatever the encoder computes in."""
        return self.encoder.new_cache(batch, max_len, dtype or torch.float32)

    def forward(self, idx, targets=None, cache=None, last_only: bool = False):
        if cache is None or targets is not None or idx.shape[1] != 1:
            return self.encoder(idx, targets, cache, last_only)
        if cache.length + 1 > self.config.block_size:
            raise ValueError(
                f"{cache.length + 1} tokens exceed the block size {self.config.block_size}"
            )
        logits = self.decoder.step(self.encoder.embed(idx), cache)
        cache.length += 1
        return logits, None

    def decode_weight_bytes(self) -> int:
        """Bytes one decoded token reads: the decoder's packed weights, scales and zero points."""
        return self.decoder.weight_bytes

    def extra_repr(self) -> str:
        engine = "fbgemm" if self.encoder_precision == "int8" else "oneDNN"
        return f"int4 decoding (ONNX Runtime), {self.encoder_precision} encoding ({engine})"


def _has_amx() -> bool:
    """Whether oneDNN can multiply on AMX tiles: the CPU has them (CPUID) and Linux grants this
    process their state (``_init_amx`` asks, as oneDNN itself would)."""
    supported = getattr(torch.cpu, "_is_amx_tile_supported", None)
    granted = getattr(torch.cpu, "_init_amx", None)
    return bool(supported and granted and supported() and granted())


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
