"""One-token decoding steps through ONNX Runtime: the whole step as one graph.

Decoding reads every weight once per token, and in eager PyTorch a step is also ~370 small
operators at a few microseconds each. This module writes a ``StoryModel`` as an ONNX graph of
ONNX Runtime's fused CPU operators and runs a step as one call:

- ``MatMulNBits``: four-bit weights in groups of 128 with a scale and zero point each, times
  activations quantised to int8 per group (``accuracy_level=4``: VNNI dot products, no
  conversion of the weights to floats);
- ``GroupQueryAttention``: rotary embedding, appending to the KV cache and attention in one node,
  reading and writing the caller's ``KVCache`` tensors in place (shared buffers);
- ``SkipSimplifiedLayerNormalization``: residual add and RMSNorm in one node.

``bench/bench_generate.py`` measures it against the PyTorch paths. Encoding many tokens at once
stays in PyTorch (fbgemm's int8 kernels are faster there), and both write the same cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from storytui import graph_cache
from storytui.model import KVCache, ModelConfig

GROUP_SIZES = (128, 64, 32, 16)  # weights sharing a scale and zero point; the first that divides
_EXTRA_DOMAIN = "com.microsoft"  # ONNX Runtime's own operators
_EXTRA_OPS = {"MatMulNBits", "GroupQueryAttention", "SkipSimplifiedLayerNormalization"}
MATRIX_BYTES = "matrix_bytes"  # the graph's metadata entry: bytes of matrices a step reads


def group_size(in_features: int, sizes: tuple[int, ...] = GROUP_SIZES) -> int:
    """The first of ``sizes`` that divides ``in_features`` (``MatMulNBits`` groups along it)."""
    for size in sizes:
        if in_features % size == 0:
            return size
    raise ValueError(f"no int4 group size divides {in_features} input features")


@dataclass(frozen=True)
class NBitsWeight:
    """A weight (out, in) as ``MatMulNBits`` stores it: weight ≈ (level − zero) × scale."""

    packed: np.ndarray  # uint8 (out, groups, group/2): two a byte, the first in the low nibble
    scale: np.ndarray  # float32 (out × groups)
    zero: np.ndarray  # uint8 (out × ceil(groups/2)): two zero points a byte, likewise
    shape: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return self.packed.nbytes + self.scale.nbytes + self.zero.nbytes

    def dequantized(self) -> torch.Tensor:
        """The rounded weight, rebuilt from the stored bytes (for tests and the loss gap)."""
        rows, cols = self.shape
        packed = torch.from_numpy(self.packed)
        levels = torch.stack((packed & 15, packed >> 4), dim=-1).flatten(-2)  # (out, groups, group)
        zero = torch.from_numpy(self.zero).reshape(rows, -1)
        zero = torch.stack((zero & 15, zero >> 4), dim=-1).reshape(rows, -1)[:, : levels.shape[1]]
        scale = torch.from_numpy(self.scale).reshape(rows, -1)
        return ((levels.float() - zero[..., None].float()) * scale[..., None]).reshape(rows, cols)


def quantize_nbits(weight: torch.Tensor, group: int) -> NBitsWeight:
    """Round ``weight`` (out, in) to four bits per group of ``group`` inputs.

    Each group gets 16 levels spanning its range, widened to include 0 so that 0 is a level,
    with an integer zero point (the int8 dot products need one). Each weight lands within half
    a step of its value.
    """
    rows, cols = weight.shape
    groups = weight.detach().float().reshape(rows, cols // group, group)
    low = groups.amin(dim=-1).clamp_(max=0)
    high = groups.amax(dim=-1).clamp_(min=0)
    scale = high.sub_(low).div_(15).clamp_(min=1e-10)
    zero = low.div_(scale).neg_().round_().clamp_(0, 15)
    # in place on one temporary: a 77M-parameter model has 63M weights to round
    levels = groups.div(scale[..., None]).add_(zero[..., None]).round_().clamp_(0, 15)
    levels = levels.to(torch.uint8)
    packed = levels[..., 0::2].bitwise_or_(levels[..., 1::2] << 4)
    zero_u8 = zero.to(torch.uint8)
    if zero_u8.shape[1] % 2:  # an odd number of groups: the last byte's high nibble is unused
        zero_u8 = torch.cat((zero_u8, torch.zeros(rows, 1, dtype=torch.uint8)), dim=1)
    zero_packed = zero_u8[:, 0::2] | (zero_u8[:, 1::2] << 4)
    return NBitsWeight(
        packed.contiguous().numpy(),
        scale.reshape(-1).numpy(),
        zero_packed.reshape(-1).numpy(),
        (rows, cols),
    )


class GraphBuilder:
    """Collects the nodes and weights of the decode graph."""

    def __init__(self, group_sizes: tuple[int, ...] = GROUP_SIZES, quantize: bool = True) -> None:
        from onnx import helper, numpy_helper

        self.group_sizes = group_sizes
        self.quantize = quantize  # False: fp32 matrices, for tests of the graph's wiring
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.weights: list = []
        self.matrix_bytes = 0  # what one step reads of the matrices

    def weight(self, name: str, array: np.ndarray) -> str:
        self.weights.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs) -> str:
        domain = _EXTRA_DOMAIN if op in _EXTRA_OPS else ""
        self.nodes.append(self.helper.make_node(op, inputs, outputs, domain=domain, **attrs))
        return outputs[0]

    def serialize(self, name: str, inputs: list, outputs: list) -> bytes:
        graph = self.helper.make_graph(self.nodes, name, inputs, outputs, self.weights)
        opsets = [self.helper.make_opsetid("", 17), self.helper.make_opsetid(_EXTRA_DOMAIN, 1)]
        # IR version 10 (onnx 1.16): what every supported ONNX Runtime release loads
        model = self.helper.make_model(graph, opset_imports=opsets, ir_version=10)
        # read back by the decoder from the session: a cached graph needs no onnx to tell it
        self.helper.set_model_props(model, {MATRIX_BYTES: str(self.matrix_bytes)})
        return model.SerializeToString()

    def linear(self, x: str, weight: torch.Tensor, out: str) -> str:
        rows, cols = weight.shape
        if not self.quantize:
            self.matrix_bytes += 4 * weight.numel()
            transposed = self.weight(f"{out}.w", weight.detach().float().t().numpy())
            return self.node("MatMul", [x, transposed], [out])
        group = group_size(cols, self.group_sizes)
        nbits = quantize_nbits(weight, group)
        self.matrix_bytes += nbits.nbytes
        names = [
            self.weight(f"{out}.{part}", a)
            for part, a in (("q", nbits.packed), ("s", nbits.scale), ("z", nbits.zero))
        ]
        return self.node(
            "MatMulNBits",
            [x, *names],
            [out],
            K=cols,
            N=rows,
            bits=4,
            block_size=group,
            accuracy_level=4,
        )


def build_decode_graph(
    model: nn.Module, group_sizes: tuple[int, ...] = GROUP_SIZES, quantize: bool = True
) -> tuple[bytes, int]:
    """The serialized ONNX model of one step of ``model`` (a ``StoryModel``) at int4, and the
    bytes of matrix weights a step reads.

    Inputs: the embedded tokens ``hidden`` (batch, tokens, width), ``seqlens_k`` (the position
    of each row's last token, int32), ``total_length`` (int32 scalar) and each layer's cache
    ``past_key_L`` / ``past_value_L``. Outputs: the last position's ``logits`` and the caches
    (``present_key_L``, bound to the same memory as the past ones).
    """
    from onnx import TensorProto, helper

    config: ModelConfig = model.config
    H, G, D = config.n_head, config.kv_heads, config.head_dim
    eps = config.norm_eps
    graph = GraphBuilder(group_sizes, quantize)
    state = {name: tensor.detach().float() for name, tensor in model.state_dict().items()}
    half = D // 2  # the model's tables repeat each frequency in both halves, sin's first negated
    graph.weight("cos", model.rope_cos[:, :half].float().numpy())
    graph.weight("sin", model.rope_sin[:, half:].float().numpy())
    graph.weight("halves", np.array([config.mlp_hidden, config.mlp_hidden], np.int64))

    def tensor(name, dtype, shape):
        return helper.make_tensor_value_info(name, dtype, shape)

    inputs = [
        tensor("hidden", TensorProto.FLOAT, ["batch", "tokens", config.n_embd]),
        tensor("seqlens_k", TensorProto.INT32, ["batch"]),
        tensor("total_length", TensorProto.INT32, []),
    ]
    outputs = [tensor("logits", TensorProto.FLOAT, ["batch", 1, config.vocab_size])]
    residual, update = "hidden", None
    for i in range(config.n_layer):
        p = f"blocks.{i}."
        norm = graph.weight(f"{p}attn_norm", state[p + "attn_norm.weight"].numpy())
        if update is None:
            x = graph.node("SimplifiedLayerNormalization", [residual, norm], [f"x{i}"], epsilon=eps)
        else:  # the residual add of the previous block, fused with this norm
            x = graph.node(
                "SkipSimplifiedLayerNormalization",
                [update, residual, norm],
                [f"x{i}", "", "", f"r{i}"],
                epsilon=eps,
            )
            residual = f"r{i}"
        qkv = graph.linear(x, state[p + "attn.qkv.weight"], f"qkv{i}")
        for kind in ("key", "value"):
            inputs.append(tensor(f"past_{kind}_{i}", TensorProto.FLOAT, ["batch", G, "max", D]))
            outputs.append(tensor(f"present_{kind}_{i}", TensorProto.FLOAT, ["batch", G, "max", D]))
        attended = graph.node(
            "GroupQueryAttention",
            [
                qkv,
                "",
                "",
                f"past_key_{i}",
                f"past_value_{i}",
                "seqlens_k",
                "total_length",
                "cos",
                "sin",
            ],
            [f"att{i}", f"present_key_{i}", f"present_value_{i}"],
            num_heads=H,
            kv_num_heads=G,
            do_rotary=1,
            rotary_interleaved=0,
        )
        attn_out = graph.linear(attended, state[p + "attn.proj.weight"], f"ao{i}")
        mlp_norm = graph.weight(f"{p}mlp_norm", state[p + "mlp_norm.weight"].numpy())
        graph.node(
            "SkipSimplifiedLayerNormalization",
            [attn_out, residual, mlp_norm],
            [f"m{i}", "", "", f"s{i}"],
            epsilon=eps,
        )
        residual = f"s{i}"
        gate_up = graph.linear(f"m{i}", state[p + "mlp.gate_up.weight"], f"gu{i}")
        graph.node("Split", [gate_up, "halves"], [f"gate{i}", f"up{i}"], axis=-1)
        graph.node("Sigmoid", [f"gate{i}"], [f"sg{i}"])
        graph.node("Mul", [f"gate{i}", f"sg{i}"], [f"silu{i}"])
        graph.node("Mul", [f"silu{i}", f"up{i}"], [f"h{i}"])
        update = graph.linear(f"h{i}", state[p + "mlp.down.weight"], f"down{i}")
    last = graph.weight("last", np.array([-1], np.int64))
    graph.node("Gather", [update, last], ["update_last"], axis=1)
    graph.node("Gather", [residual, last], ["residual_last"], axis=1)
    final_norm = graph.weight("norm", state["norm.weight"].numpy())
    graph.node(
        "SkipSimplifiedLayerNormalization",
        ["update_last", "residual_last", final_norm],
        ["final"],
        epsilon=eps,
    )
    graph.linear("final", state["lm_head.weight"], "logits")
    return graph.serialize("storytui_decode", inputs, outputs), graph.matrix_bytes


def new_session(graph: bytes, threads: int | None = None):
    """An ONNX Runtime CPU session running the nodes one after another, each on ``threads``
    threads (default: as many as torch uses)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: its warnings are not the writer's business
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


class OnnxDecoder:
    """Runs one-token steps of a ``StoryModel`` on its ``KVCache`` through ONNX Runtime.

    The cache tensors are bound as both the past and the present of each layer, so the graph
    appends the new keys and values in place and PyTorch's encoder and this decoder can take
    turns on one cache. The bindings are kept between steps of the same cache: a step only
    writes the new token's embedding and position into buffers the graph already reads.
    """

    def __init__(
        self,
        model: nn.Module,
        threads: int | None = None,
        group_sizes: tuple[int, ...] = GROUP_SIZES,
        quantize: bool = True,
    ) -> None:
        self.config: ModelConfig = model.config

        def build() -> bytes:
            return build_decode_graph(model, group_sizes, quantize)[0]

        def load(graph: bytes) -> tuple[object, int]:
            """The session and the matrix bytes it reads; a graph without them is refused."""
            session = new_session(graph, threads)
            return session, int(session.get_modelmeta().custom_metadata_map[MATRIX_BYTES])

        if quantize:  # the int4 graph is kept on disk between runs (storytui.graph_cache)
            key = graph_cache.weights_key(model, group_sizes)
            self.session, self.weight_bytes = graph_cache.load_or_build(key, build, load)
        else:
            self.session, self.weight_bytes = load(build())
        self._binding = None
        self._buffers: _StepBuffers | None = None
        self._bound_to: tuple[int, ...] = ()

    def step(self, hidden: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits (batch, 1, vocab) after appending the embedded tokens ``hidden`` (batch, 1,
        width) at ``cache.length``; the caller advances ``cache.length``."""
        if hidden.shape[1] != 1:
            raise ValueError("the ONNX decoder takes one token per step")
        if cache.length >= cache.max_len:
            raise ValueError(f"the KV cache is full ({cache.max_len} tokens)")
        if self._binding is None or self._bound_to != _cache_memory(cache):
            self._bind(cache)
        buffers = self._buffers
        if hidden.shape[0] != buffers.hidden.shape[0]:
            raise ValueError(f"{hidden.shape[0]} rows for a cache of {buffers.hidden.shape[0]}")
        buffers.hidden.copy_(hidden)
        buffers.seqlens_k.fill(cache.length)  # the new token's position
        buffers.total_length.fill(cache.length + 1)
        self.session.run_with_iobinding(self._binding)
        return buffers.logits.clone()

    def _bind(self, cache: KVCache) -> None:
        """Bind a step's inputs and outputs: fresh buffers, and the cache tensors in place.

        Everything is checked and built before it replaces the old binding, so a refused cache
        leaves the previous one intact.
        """
        tensors = [*cache.keys, *cache.values]
        if any(t.dtype != torch.float32 or not t.is_contiguous() for t in tensors):
            raise ValueError("the ONNX decoder needs a contiguous fp32 KV cache")
        config = self.config
        batch = cache.keys[0].shape[0]
        with torch.inference_mode(False):  # written in place under any grad mode
            buffers = _StepBuffers(
                hidden=torch.empty(batch, 1, config.n_embd),
                logits=torch.empty(batch, 1, config.vocab_size),
                seqlens_k=np.zeros(batch, np.int32),
                total_length=np.zeros((), np.int32),
            )
        binding = self.session.io_binding()

        def bind(name: str, array, dtype, output: bool = False) -> None:
            pointer = array.data_ptr() if isinstance(array, torch.Tensor) else array.ctypes.data
            bind_to = binding.bind_output if output else binding.bind_input
            bind_to(name, "cpu", 0, dtype, list(array.shape), pointer)

        bind("hidden", buffers.hidden, np.float32)
        bind("seqlens_k", buffers.seqlens_k, np.int32)
        bind("total_length", buffers.total_length, np.int32)
        bind("logits", buffers.logits, np.float32, output=True)
        for i in range(config.n_layer):
            for kind, layers in (("key", cache.keys), ("value", cache.values)):
                bind(f"past_{kind}_{i}", layers[i], np.float32)
                bind(f"present_{kind}_{i}", layers[i], np.float32, output=True)
        self._binding, self._buffers = binding, buffers
        self._bound_to = _cache_memory(cache)


@dataclass(frozen=True)
class _StepBuffers:
    """What a step reads and writes besides the cache, at addresses bound once."""

    hidden: torch.Tensor
    logits: torch.Tensor
    seqlens_k: np.ndarray
    total_length: np.ndarray


def _cache_memory(cache: KVCache) -> tuple[int, ...]:
    """Where a cache's tensors live: a binding is valid while these are unchanged."""
    return tuple(t.data_ptr() for t in (*cache.keys, *cache.values))
