"""The storytui transformer: a decoder-only language model in one readable file.

nanoGPT's shape with the choices that train better per FLOP at this size: RMSNorm before each
block, rotary position embeddings (so a context can be re-encoded at any offset), SwiGLU MLPs,
no biases, tied input/output embeddings, and attention through ``scaled_dot_product_attention``.
Generation uses a preallocated KV cache; the cached path gives the same logits as a full forward
pass (``tests/test_model.py`` checks this to 1e-4).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


MAX_BLOCK_SIZE = 131_072  # tokens of context; 64 MB of rotary tables at head size 64
MAX_LAYERS = 1_024  # far past any preset; a typo of 6 as 600,000 must not build for minutes


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network; stored in each checkpoint's config.json."""

    vocab_size: int
    block_size: int = 1024
    n_layer: int = 9
    n_head: int = 12
    n_embd: int = 768
    mlp_hidden: int = 2048
    dropout: float = 0.0
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    arch: str = "storytui"
    # Grouped-query attention: fewer key/value heads than query heads (None: one per query
    # head). Decoding reads the whole KV cache every token, so on a CPU a third of the heads
    # is close to a third of the attention time at long contexts.
    n_kv_head: int | None = None

    def __post_init__(self) -> None:
        """Refuse any config the network cannot be built from (a hand-edited config.json
        included), so a bad value fails here with its name, not deep inside torch."""
        sizes = ["vocab_size", "block_size", "n_layer", "n_head", "n_embd", "mlp_hidden"]
        if self.n_kv_head is not None:
            sizes.append("n_kv_head")
        for name in sizes:
            value = getattr(self, name)
            if not _is_integer(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        numbers = [
            ("dropout", lambda x: 0 <= x < 1, "in [0, 1)"),
            ("norm_eps", lambda x: 0 < x < 1, "in (0, 1)"),
            ("rope_theta", lambda x: x >= 1, "of at least 1"),  # below, positions overflow
        ]
        for name, valid, rule in numbers:
            value = getattr(self, name)
            if not _is_real(value) or not valid(value):
                raise ValueError(f"{name} must be a number {rule}, not {value!r}")
        if self.block_size > MAX_BLOCK_SIZE:  # its rotary tables are allocated whole
            raise ValueError(
                f"block_size must be at most {MAX_BLOCK_SIZE:,}, not {self.block_size!r}"
            )
        if self.n_layer > MAX_LAYERS:
            raise ValueError(f"n_layer must be at most {MAX_LAYERS:,}, not {self.n_layer!r}")
        if not isinstance(self.arch, str):
            raise ValueError(f"arch must be a name, not {self.arch!r}")
        if self.n_embd % self.n_head or self.n_head % self.kv_heads:
            raise ValueError(
                f"width {self.n_embd}, {self.n_head} heads and {self.kv_heads} key/value heads "
                "do not divide evenly"
            )
        if self.arch == "storytui" and self.head_dim % 2:  # rotary turns pairs of dimensions
            raise ValueError(f"head size {self.head_dim} must be even")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def kv_width(self) -> int:
        """Width of the keys (and of the values) of one token: key/value heads × head size."""
        return self.kv_heads * self.head_dim

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ModelConfig:
        if not isinstance(data, dict):
            raise ValueError(f"model must be an object of sizes, not {data!r}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        if "vocab_size" not in data:
            raise ValueError("model has no vocab_size")
        return cls(**data)


@dataclass(frozen=True)
class Preset:
    """A named model size; ``vocab_size`` comes from the tokenizer it is built with."""

    name: str
    description: str
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    mlp_hidden: int
    dropout: float = 0.0
    arch: str = "storytui"
    tokenizer: str | None = None  # None: the default vocabulary
    n_kv_head: int | None = None  # None: as many key/value heads as query heads

    def config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(
            vocab_size=vocab_size,
            block_size=self.block_size,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.n_embd,
            mlp_hidden=self.mlp_hidden,
            dropout=self.dropout,
            arch=self.arch,
            n_kv_head=self.n_kv_head,
        )


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", "tests and smoke runs", 128, 2, 2, 32, 96),
    "small": Preset("small", "trains on a laptop CPU", 512, 6, 6, 384, 1024),
    "colab": Preset("colab", "one free Colab T4 session", 1024, 9, 12, 768, 2432, n_kv_head=4),
    "seed": Preset(
        "seed",
        "the original 76.9M lecture-GPT story model (GPT-2 vocabulary)",
        block_size=256,
        n_layer=8,
        n_head=8,
        n_embd=512,
        mlp_hidden=2048,
        dropout=0.2,
        arch="seed",
        tokenizer="gpt2",
    ),
}


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rotary_tables(config: ModelConfig, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(length, D) cos/sin tables for rotary embeddings in the rotate-half layout (as Llama).

    Each frequency fills both halves; sin's first half is negated, so that rotating is
    ``x * cos + roll(x) * sin``: four small ops per step instead of nine.
    """
    half = config.head_dim // 2
    # computed on the CPU even inside ``torch.device("meta")``, where arange would import dynamo
    positions = torch.arange(length, dtype=torch.float32, device="cpu")
    inv_freq = 1.0 / (
        config.rope_theta ** (torch.arange(half, dtype=torch.float32, device="cpu") / half)
    )
    angles = torch.outer(positions, inv_freq)
    cos, sin = angles.cos(), angles.sin()
    return torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (..., T, D) queries and/or keys by the (T, D) ``rotary_tables`` rows of x's positions.

    Per pair (x1, x2) of the two halves: (x1 cos - x2 sin, x2 cos + x1 sin), computed in fp32.
    """
    if x.dtype == torch.float32:  # the usual case: no casts to dispatch
        return x * cos + x.roll(x.size(-1) // 2, dims=-1) * sin
    x32 = x.float()
    rotated = x32 * cos + x32.roll(x.size(-1) // 2, dims=-1) * sin
    return rotated.type_as(x)


class KVCache:
    """Preallocated keys and values for every layer; ``length`` tokens are filled."""

    def __init__(self, config: ModelConfig, batch: int, max_len: int, dtype, device) -> None:
        shape = (batch, config.kv_heads, max_len, config.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.values = [
            torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)
        ]
        self.max_len = max_len
        self.length = 0

    def reset(self) -> None:
        self.length = 0

    def append(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store (B, H, T, D) keys and values after the cached ones; return all of them so far."""
        start, end = self.length, self.length + k.size(2)
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.kv_heads
        self.head_dim = config.head_dim
        # queries, keys and values in one matmul; its output is [query heads | key heads | value heads]
        self.qkv = nn.Linear(config.n_embd, config.n_embd + 2 * config.kv_width, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.dropout = config.dropout

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache | None,
        layer: int,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Attention output for every position of ``x``, or with ``last_only`` for its last one
        (every position's keys and values still go into the cache)."""
        B, T, C = x.shape
        H, G = self.n_head, self.n_kv_head
        qkv = self.qkv(x).view(B, T, H + 2 * G, self.head_dim).transpose(1, 2)
        qk = apply_rotary(qkv[:, : H + G], cos, sin)  # queries and keys in one go: fewer ops
        q, k, v = qk[:, :H], qk[:, H:], qkv[:, H + G :]
        start = cache.length if cache is not None else 0
        if cache is not None:
            k_all, v_all = cache.append(layer, k, v)
        if last_only and T > 1:  # the last query sees every key: no mask, one row of work
            if cache is not None:
                q, k, v = q.to(k_all.dtype), k_all, v_all
            q = q[:, :, -1:]
            y = F.scaled_dot_product_attention(q, k, v, enable_gqa=G != H).to(x.dtype)
            return self.proj(y.reshape(B, 1, C))
        if start == 0:  # nothing before this chunk: plain causal attention over it
            if G != H:  # training kernels want one key/value head per query head
                k, v = k.repeat_interleave(H // G, dim=1), v.repeat_interleave(H // G, dim=1)
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
            )
        elif T == 1:  # one new token: a group's queries are its key/value head's query rows
            q = q.reshape(B, G, H // G, self.head_dim).to(k_all.dtype)
            y = F.scaled_dot_product_attention(q, k_all, v_all).to(x.dtype)
            return self.proj(y.reshape(B, 1, C))
        else:  # a chunk after cached tokens: each query sees the past and its own prefix
            q = q.to(k_all.dtype)  # a cache may hold a wider type than the weights compute in
            mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
            y = F.scaled_dot_product_attention(
                q, k_all, v_all, attn_mask=mask, enable_gqa=G != H
            ).to(x.dtype)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(config.n_embd, 2 * config.mlp_hidden, bias=False)
        self.down = nn.Linear(config.mlp_hidden, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.attn = Attention(config)
        self.mlp_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = SwiGLU(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, cos, sin, cache, layer, last_only: bool = False):
        if last_only:  # the model's last block when only the final logits are wanted
            x = x[:, -1:] + self.attn(self.attn_norm(x), cos, sin, cache, layer, last_only=True)
            return x + self.mlp(self.mlp_norm(x))
        if self.training:
            x = x + self.dropout(self.attn(self.attn_norm(x), cos, sin, cache, layer))
            return x + self.dropout(self.mlp(self.mlp_norm(x)))
        # inference skips the dropout calls: two fewer modules per block for every token
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, layer)
        return x + self.mlp(self.mlp_norm(x))


class StoryModel(nn.Module):
    """Decoder-only transformer; ``forward`` serves training (targets) and cached generation."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.arch != "storytui":
            raise ValueError(f"StoryModel builds arch 'storytui', not {config.arch!r}")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight  # tied: saves vocab × width parameters
        cos, sin = rotary_tables(config, config.block_size)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        residual_std = 0.02 / math.sqrt(2 * config.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, std=residual_std)
            nn.init.normal_(block.mlp.down.weight, std=residual_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_cache(self, batch: int = 1, max_len: int | None = None, dtype=None) -> KVCache:
        weight = self.embed.weight
        return KVCache(
            self.config,
            batch,
            max_len or self.config.block_size,
            dtype or weight.dtype,
            weight.device,
        )

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for ``idx`` (B, T); with ``targets`` also the mean loss (-100 = ignored).

        With a ``cache`` the tokens are appended after the cached ones; ``last_only`` skips the
        last block's attention and MLP and the vocabulary projection for all but the final
        position (prefill speed); the cache is filled all the same.
        """
        T = idx.shape[1]
        start = cache.length if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"{start + T} tokens exceed the block size {self.config.block_size}")
        cos = self.rope_cos[start : start + T]
        sin = self.rope_sin[start : start + T]
        x = self.embed(idx)
        # the last block only needs to finish the final position: its keys and values for every
        # position fill the cache, but its attention and MLP rows for the others (a ninth of a
        # 1,000-token prefill at the colab preset) would only feed logits nobody reads
        finish_last_only = last_only and targets is None
        for layer, block in enumerate(self.blocks):
            final = finish_last_only and layer == len(self.blocks) - 1
            x = block(x, cos, sin, cache, layer, last_only=final)
        if cache is not None:
            cache.length = start + T
        return output_logits(self.lm_head, self.norm(x), targets, last_only)


def output_logits(
    lm_head: nn.Module, x: torch.Tensor, targets: torch.Tensor | None, last_only: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Vocabulary logits (and the mean loss, -100 = ignored) from final hidden states; shared
    by every architecture so training and generation treat them alike."""
    if targets is not None:
        logits = lm_head(x)
        loss = F.cross_entropy(
            logits.float().view(-1, logits.size(-1)), targets.view(-1), ignore_index=-100
        )
        return logits, loss
    if last_only:
        x = x[:, -1:, :]
    return lm_head(x), None


class _SkipRandomInit(TorchFunctionMode):
    """Inside it, layers skip filling their weights with random numbers (the memory is left as
    allocated): for a model a checkpoint overwrites next, where drawing 77M random numbers
    would cost a second of every start. Buffers (the rotary tables) are computed as usual."""

    SKIPPED = frozenset(
        {
            torch.Tensor.normal_,
            torch.Tensor.uniform_,
            nn.init.normal_,
            nn.init.uniform_,
            nn.init.kaiming_uniform_,
            nn.init.trunc_normal_,
        }
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.SKIPPED:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def build_model(config: ModelConfig, *, initialize: bool = True) -> nn.Module:
    """The network for ``config.arch``: storytui's own, or the imported seed architecture.

    ``initialize=False`` leaves the weights uninitialised, for loading a checkpoint into.
    """
    if not initialize:
        with _SkipRandomInit():
            return build_model(config)
    if config.arch == "storytui":
        return StoryModel(config)
    if config.arch == "seed":
        from storytui.seed_model import SeedModel

        return SeedModel(config)
    raise ValueError(f"unknown architecture {config.arch!r}")


def count_parameters(config: ModelConfig) -> int:
    """Exact parameter count without allocating the weights (meta device, left uninitialised:
    random init there costs an import of dynamo)."""
    with torch.device("meta"):
        model = build_model(config, initialize=False)
    return sum(p.numel() for p in model.parameters())
