"""Helpers for the generation benchmark: machine facts, timing, and the Hugging Face twin model."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")


@contextlib.contextmanager
def scratch_home() -> Iterator[Path]:
    """A temporary ``STORYTUI_HOME`` for one benchmark run (its child processes inherit it).

    The int4 graphs a run builds for random weights would otherwise land in the writer's own
    cache and push their real ones out of it.
    """
    home = Path(tempfile.mkdtemp(prefix="storytui-bench-"))
    previous = os.environ.get("STORYTUI_HOME")
    os.environ["STORYTUI_HOME"] = str(home)
    try:
        yield home
    finally:
        if previous is None:
            os.environ.pop("STORYTUI_HOME", None)
        else:
            os.environ["STORYTUI_HOME"] = previous
        shutil.rmtree(home, ignore_errors=True)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_pressure() -> str:
    """Share of the last 10 s that runnable tasks waited for a CPU (other people's jobs)."""
    try:
        with open("/proc/pressure/cpu") as f:
            return f.readline().split()[1].split("=")[1] + "%"
    except (OSError, IndexError):
        return "n/a"


def machine_report() -> list[str]:
    flags = cpu_flags()
    isa = [
        name
        for name in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")
        if name in flags
    ]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs; {', '.join(isa) or 'no AVX'})",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; Python {platform.python_version()}",
        f"load average {load}; CPU pressure (avg10) {cpu_pressure()}",
    ]


# The machine may be shared: a sample during which other processes ran on the CPUs is taken
# again (a few times at most; the least disturbed one is kept), and the count is reported.
MAX_FOREIGN_SHARE = 0.05
CLOCK_SLACK = 0.04  # seconds: both CPU clocks tick in 10 ms steps
RETRIES = 2
disturbed_samples = 0


def _busy_seconds() -> float:
    """CPU seconds all processes have used (from /proc/stat), or 0.0 where it is missing."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


def quiet_sample(fn: Callable[[], T]) -> tuple[T, float]:
    """(result, seconds) of ``fn``, retaken while other processes took CPU time during it."""
    global disturbed_samples
    best: tuple[float, T, float] | None = None
    for _ in range(RETRIES):
        busy, own, start = _busy_seconds(), _own_seconds(), time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
        foreign = (_busy_seconds() - busy) - (_own_seconds() - own) - CLOCK_SLACK
        share = max(foreign, 0.0) / (elapsed * (os.cpu_count() or 1))
        if best is None or share < best[0]:
            best = (share, result, elapsed)
        if share <= MAX_FOREIGN_SHARE:
            break
    if best[0] > MAX_FOREIGN_SHARE:
        disturbed_samples += 1
    return best[1], best[2]


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(quiet_sample(fn)[1] for _ in range(repeats))


def median_value(fn: Callable[[], float], repeats: int) -> float:
    """Median of what ``fn`` measures itself (e.g. tokens/s), each sample taken quietly."""
    return statistics.median(quiet_sample(fn)[0] for _ in range(repeats))


def read_bandwidth(megabytes: int = 512, repeats: int = 15) -> float:
    """Bytes per second for summing a tensor far larger than the caches (the best of a few)."""
    x = torch.ones(megabytes * 2**20 // 4)
    x.sum()
    best = min(_timed(x.sum) for _ in range(repeats))
    return x.numel() * 4 / best


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---------------------------------------------------------------------- bytes read per token


@dataclass(frozen=True)
class TokenBytes:
    weights: int  # every matrix read once; an embedding lookup reads one row only
    kv_cache: int  # keys and values attended over at the average decode position

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache


def weight_bytes(model: nn.Module) -> int:
    """Bytes of matrix weights one decode step reads (quantised layers say what theirs read)."""
    if hasattr(model, "decode_weight_bytes"):  # Int8Linear, Int4Model, TorchInt4Linear
        return model.decode_weight_bytes()
    if isinstance(model, nn.Embedding):  # a lookup reads one row
        return 0
    weight = getattr(model, "weight", None)
    own = weight.numel() * weight.element_size() if _is_matrix(weight) else 0
    return own + sum(weight_bytes(child) for child in model.children())


def _is_matrix(weight) -> bool:
    return isinstance(weight, torch.Tensor) and weight.dim() == 2


def kv_bytes(n_layer: int, width: int, positions: float, element_size: int) -> int:
    """Keys plus values of every layer for ``positions`` cached tokens (``width``: the
    config's ``kv_width``)."""
    return int(2 * n_layer * width * positions * element_size)


# ---------------------------------------------------------------------- Hugging Face twin


def llama_twin(model: nn.Module):
    """A ``LlamaForCausalLM`` with StoryModel's shape and a copy of its weights.

    Same architecture term by term: RMSNorm, rotate-half rotary embeddings with the same
    frequencies, SwiGLU (gate, up halves of ``gate_up``), no biases, tied embeddings.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = model.config
    config = LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.n_embd,
        intermediate_size=cfg.mlp_hidden,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=cfg.block_size,
        rms_norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_theta,
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
        hidden_act="silu",
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    twin = LlamaForCausalLM(config).eval()
    C, H = cfg.n_embd, cfg.mlp_hidden
    KV = cfg.kv_width
    state = {
        "model.embed_tokens.weight": model.embed.weight,
        "model.norm.weight": model.norm.weight,
    }
    for i, block in enumerate(model.blocks):
        prefix = f"model.layers.{i}."
        qkv = block.attn.qkv.weight
        gate_up = block.mlp.gate_up.weight
        state.update(
            {
                prefix + "input_layernorm.weight": block.attn_norm.weight,
                prefix + "self_attn.q_proj.weight": qkv[:C],
                prefix + "self_attn.k_proj.weight": qkv[C : C + KV],
                prefix + "self_attn.v_proj.weight": qkv[C + KV :],
                prefix + "self_attn.o_proj.weight": block.attn.proj.weight,
                prefix + "post_attention_layernorm.weight": block.mlp_norm.weight,
                prefix + "mlp.gate_proj.weight": gate_up[:H],
                prefix + "mlp.up_proj.weight": gate_up[H:],
                prefix + "mlp.down_proj.weight": block.mlp.down.weight,
            }
        )
    missing, unexpected = twin.load_state_dict(
        {k: v.detach().clone() for k, v in state.items()}, strict=False
    )
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"weight copy mismatch: missing {missing}, unexpected {unexpected}")
    twin.tie_weights()
    return twin
