"""How int4 decoding is set up: its matrix kernel against the others, and which group size.

    .venv/bin/python bench/bench_int4.py                                  # about 2 minutes
    .venv/bin/python bench/bench_int4.py --loss-gap CHECKPOINT_DIR [...]  # plus the loss gaps

1. The 37 matrices of the ``colab`` preset (random weights) times one input row, as a decoding
   step multiplies them: ONNX Runtime's ``MatMulNBits`` (int4, int8 dot products; what storytui
   decodes with), torch's int4 kernel, and fbgemm's int8 one.
2. Greedy decode tokens/s of the ``colab`` model after an 824-token context with groups of 32,
   64 and 128 weights, alternated round by round; with ``--loss-gap``, each group size's loss
   gap against fp32 on real text, every token through the decoder. Together they set
   ``storytui.onnx_decoder.GROUP_SIZES``.
3. The attention of one decoding step (``GroupQueryAttention``, the colab preset's nine
   layers after 924 cached tokens) reading an fp32 KV cache, as storytui's does, against an
   int8 one with a scale per channel, which reads a quarter of the bytes; alternated.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_report, scratch_home
from bench_generate import STORY_SOURCE, decoded_logits, scoring_windows, storytui_decode_tps
from torch_int4 import TorchInt4Linear

from storytui.allocator import keep_freed_memory
from storytui.model import PRESETS, StoryModel
from storytui.onnx_decoder import GraphBuilder, new_session
from storytui.precision import Int4Model, Int8Linear, prepare_model

GROUP_SIZES = (32, 64, 128)


def matrix_kernels(model: StoryModel, repeats: int = 15) -> None:
    """Best time of the 37 one-row products, per kernel."""
    from onnx import TensorProto, helper

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    builder = GraphBuilder()
    widths = sorted({linear.in_features for linear in linears})
    inputs = [helper.make_tensor_value_info(f"x{w}", TensorProto.FLOAT, [1, w]) for w in widths]
    outputs = []
    for i, linear in enumerate(linears):
        builder.linear(f"x{linear.in_features}", linear.weight, f"y{i}")
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [1, None]))
    session = new_session(builder.serialize("matrices", inputs, outputs))
    feed = {f"x{w}": np.random.default_rng(0).standard_normal((1, w), np.float32) for w in widths}
    torch_int4 = [TorchInt4Linear(linear, reduce_range=False) for linear in linears]
    int8 = [Int8Linear(linear, reduce_range=False) for linear in linears]
    rows = [torch.randn(1, 1, linear.in_features) for linear in linears]

    def best_ms(run) -> float:
        run()  # warm-up
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            timings.append(time.perf_counter() - start)
        return min(timings) * 1e3

    def layers(chosen):
        return lambda: [layer(x) for layer, x in zip(chosen, rows, strict=True)]

    with torch.inference_mode():
        results = [
            (
                "ONNX Runtime MatMulNBits int4 (storytui)",
                best_ms(lambda: session.run(None, feed)),
                builder.matrix_bytes,
            ),
            (
                "torch _weight_int4pack_mm_for_cpu",
                best_ms(layers(torch_int4)),
                sum(layer.decode_weight_bytes() for layer in torch_int4),
            ),
            (
                "fbgemm int8 (quantized.linear_dynamic)",
                best_ms(layers(int8)),
                sum(layer.decode_weight_bytes() for layer in int8),
            ),
        ]
    print(f"\nall {len(linears)} matrices of the colab preset times one row, best of {repeats}:\n")
    print("| kernel | ms | MB read | GB/s |")
    print("|---|---:|---:|---:|")
    for name, ms, nbytes in results:
        print(f"| {name} | {ms:.2f} | {nbytes / 1e6:.1f} | {nbytes / ms / 1e6:.1f} |")


def int4_models(model: StoryModel) -> dict[int, Int4Model]:
    """One ``Int4Model`` per group size (its decoder built with only that size)."""
    return {g: Int4Model(model, group_sizes=(g,)) for g in GROUP_SIZES}


def group_size_speed(model: StoryModel, rounds: int, new_tokens: int) -> None:
    block = model.config.block_size
    prompt = torch.randint(0, model.config.vocab_size, (1, block - new_tokens))
    models = int4_models(model)
    rates: dict[int, list[float]] = {g: [] for g in GROUP_SIZES}
    with torch.inference_mode():
        for m in models.values():
            storytui_decode_tps(m, prompt, 8, torch.float32)  # warm-up
        for _ in range(rounds):
            for g, m in models.items():
                rates[g].append(storytui_decode_tps(m, prompt, new_tokens, torch.float32))
    print(f"\ndecode tok/s after {prompt.size(1)} tokens, {rounds} alternated rounds:\n")
    print("| group size | bytes per weight | tok/s per round | median |")
    print("|---:|---:|---|---:|")
    weights = sum(x.numel() for x in model.parameters() if x.dim() == 2)  # the head is tied
    for g, m in models.items():
        rounds_text = ", ".join(f"{r:.1f}" for r in rates[g])
        print(
            f"| {g} | {m.decode_weight_bytes() / weights:.3f} | {rounds_text} "
            f"| {statistics.median(rates[g]):.1f} |"
        )


def group_size_loss_gap(checkpoint_dir: Path, text_file: Path, max_tokens: int) -> None:
    from storytui.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(checkpoint_dir)
    block = checkpoint.model.config.block_size
    _, windows = scoring_windows(checkpoint.tokenizer, text_file, max_tokens, block)
    n_targets = sum(len(w) - 1 for w in windows)

    def mean_loss(model, decoded: bool) -> float:
        total = 0.0
        with torch.inference_mode():
            for window in windows:
                x, y = torch.tensor([window[:-1]]), torch.tensor([window[1:]])
                if decoded:
                    loss = F.cross_entropy(decoded_logits(model, x)[0], y[0])
                else:
                    _, loss = model(x, y)
                total += loss.item() * (len(window) - 1)
        return total / n_targets

    base = checkpoint.model.float().eval()
    reference = mean_loss(prepare_model(copy.deepcopy(base), "fp32"), decoded=False)
    print(
        f"\n{checkpoint_dir.name} on {text_file.name}, {n_targets:,} tokens: fp32 {reference:.4f}"
    )
    print("| group size | loss (nats/token) | gap vs fp32 |")
    print("|---:|---:|---:|")
    for g, model in int4_models(base).items():
        loss = mean_loss(model, decoded=True)
        print(f"| {g} | {loss:.4f} | {loss - reference:+.4f} |", flush=True)


def attention_step_session(config, int8: bool):
    """A graph of one ``GroupQueryAttention`` step per layer over caches of ``block_size``."""
    from onnx import TensorProto, helper

    H, G, D = config.n_head, config.n_kv_head, config.n_embd // config.n_head
    cache_type = TensorProto.INT8 if int8 else TensorProto.FLOAT
    builder = GraphBuilder()
    inputs = [
        helper.make_tensor_value_info("qkv", TensorProto.FLOAT, [1, 1, (H + 2 * G) * D]),
        helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, [1]),
        helper.make_tensor_value_info("total_length", TensorProto.INT32, []),
        helper.make_tensor_value_info("cos", TensorProto.FLOAT, [config.block_size, D // 2]),
        helper.make_tensor_value_info("sin", TensorProto.FLOAT, [config.block_size, D // 2]),
    ]
    outputs = []
    scales = ["", "", "", "k_scale", "v_scale"] if int8 else []
    if int8:
        for name in ("k_scale", "v_scale"):
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, G, 1, D]))
    quant = dict(k_quant_type="PER_CHANNEL", v_quant_type="PER_CHANNEL", kv_cache_bit_width=8)
    for i in range(config.n_layer):
        for kind in ("key", "value"):
            shape = [1, G, config.block_size, D]
            inputs.append(helper.make_tensor_value_info(f"past_{kind}_{i}", cache_type, shape))
            outputs.append(helper.make_tensor_value_info(f"present_{kind}_{i}", cache_type, shape))
        past = [f"past_key_{i}", f"past_value_{i}", "seqlens_k", "total_length", "cos", "sin"]
        builder.node(
            "GroupQueryAttention",
            ["qkv", "", "", *past, *scales],
            [f"att{i}", f"present_key_{i}", f"present_value_{i}"],
            num_heads=H,
            kv_num_heads=G,
            do_rotary=1,
            rotary_interleaved=0,
            **(quant if int8 else {}),
        )
        outputs.append(helper.make_tensor_value_info(f"att{i}", TensorProto.FLOAT, [1, 1, H * D]))
    return new_session(builder.serialize("attention", inputs, outputs))


def kv_cache_attention(model: StoryModel, rounds: int, cached: int = 924, steps: int = 200) -> None:
    """ms per decoding step's attention, fp32 cache against int8, alternated round by round."""
    import onnxruntime as ort

    config = model.config
    G, D, T = config.n_kv_head, config.n_embd // config.n_head, config.block_size
    rng = np.random.default_rng(0)
    angles = rng.random((T, D // 2), np.float32)
    feed = {
        "qkv": rng.standard_normal((1, 1, (config.n_head + 2 * G) * D), np.float32),
        "seqlens_k": np.array([cached], np.int32),
        "total_length": np.array(cached + 1, np.int32),
        "cos": np.cos(angles),
        "sin": np.sin(angles),
    }
    runs = {}
    for int8 in (False, True):
        session = attention_step_session(config, int8)
        binding = session.io_binding()
        extra = {"k_scale": np.full((1, G, 1, D), 0.02, np.float32)} if int8 else {}
        extra |= {"v_scale": np.full((1, G, 1, D), 0.02, np.float32)} if int8 else {}
        for name, array in (feed | extra).items():
            binding.bind_cpu_input(name, array)
        for i in range(config.n_layer):
            for kind in ("key", "value"):
                if int8:
                    cache = rng.integers(-127, 128, (1, G, T, D), dtype=np.int8)
                else:
                    cache = rng.standard_normal((1, G, T, D), np.float32)
                value = ort.OrtValue.ortvalue_from_numpy(cache)
                binding.bind_ortvalue_input(f"past_{kind}_{i}", value)
                binding.bind_ortvalue_output(f"present_{kind}_{i}", value)  # in place
            binding.bind_output(f"att{i}")
        runs["int8" if int8 else "fp32"] = (session, binding)
    timings: dict[str, list[float]] = {name: [] for name in runs}
    for session, binding in runs.values():
        for _ in range(20):  # warm-up
            session.run_with_iobinding(binding)
    for _ in range(rounds):
        for name, (session, binding) in runs.items():
            start = time.perf_counter()
            for _ in range(steps):
                session.run_with_iobinding(binding)
            timings[name].append((time.perf_counter() - start) / steps * 1e3)
    cache_bytes = 2 * config.n_layer * G * (cached + 1) * D
    print(
        f"\nattention of one step, {config.n_layer} layers after {cached} tokens, {rounds} rounds:\n"
    )
    print("| KV cache | MB read | ms per step, each round | median |")
    print("|---|---:|---|---:|")
    for name, values in timings.items():
        nbytes = cache_bytes * (4 if name == "fp32" else 1)
        each = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {nbytes / 1e6:.1f} | {each} | {statistics.median(values):.2f} |")
    ratio = statistics.median(timings["fp32"]) / statistics.median(timings["int8"])
    print(f"\nint8 cache: {ratio:.2f}x the fp32 cache's speed")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--loss-gap", type=Path, nargs="*", default=[], metavar="CHECKPOINT_DIR")
    parser.add_argument("--text", type=Path, default=STORY_SOURCE)
    parser.add_argument("--loss-tokens", type=int, default=20_000)
    args = parser.parse_args(argv)
    for line in machine_report():
        print(line)
    keep_freed_memory()
    torch.manual_seed(0)
    model = StoryModel(PRESETS["colab"].config(16384)).eval()
    matrix_kernels(model)
    group_size_speed(model, args.rounds, args.new_tokens)
    kv_cache_attention(model, args.rounds + 2)
    for checkpoint_dir in args.loss_gap:
        group_size_loss_gap(checkpoint_dir, args.text, args.loss_tokens)


if __name__ == "__main__":
    with scratch_home():  # its int4 graphs stay out of the writer's cache
        main()
