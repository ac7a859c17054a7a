"""The seed architecture: the 76.9M lecture GPT that storytui grew out of, computed exactly.

The original (Karpathy's lecture ``gpt.py``) is a pre-LayerNorm GPT with learned position
embeddings, ReLU MLPs, biases everywhere except the attention projections, an untied ``lm_head``
and one small module per attention head. Two details make it differ from textbook GPT and are
kept here on purpose, because imported checkpoints were trained with them:

* attention scores are scaled by ``n_embd ** -0.5`` (the embedding width), not the head width;
* no dropout on the embeddings, dropout 0.2 on the attention weights, after the attention
  projection and after the MLP.

The per-head ``key``/``query``/``value`` linears are fused here into one ``qkv`` linear and the
attention runs through ``scaled_dot_product_attention``; ``lecture_to_seed_state`` converts the
original layout. The causal ``tril`` buffers are not stored: they are constants.

storytui layout (``model.safetensors`` of a seed checkpoint), C = n_embd, H = n_head:

    token_embedding.weight         (vocab, C)   <- token_embedding_table.weight
    position_embedding.weight      (block, C)   <- position_embedding_table.weight
    blocks.{i}.ln1.{weight,bias}                <- blocks.{i}.ln1
    blocks.{i}.attn.qkv.weight     (3C, C)      <- rows: query of heads 0..H-1, then keys, values
    blocks.{i}.attn.proj.{weight,bias}          <- blocks.{i}.sa.proj
    blocks.{i}.ln2.{weight,bias}                <- blocks.{i}.ln2
    blocks.{i}.mlp.fc.{weight,bias}             <- blocks.{i}.ffwd.net.0
    blocks.{i}.mlp.proj.{weight,bias}           <- blocks.{i}.ffwd.net.2
    ln_f.{weight,bias}                          <- ln_f
    lm_head.{weight,bias}          (vocab, C)   <- lm_head
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from storytui.model import KVCache, ModelConfig, output_logits


class SeedAttention(nn.Module):
    """All heads of the lecture's ``MultiHeadAttention`` in one fused projection."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.scale = config.n_embd**-0.5  # the original scales by the embedding width
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout_p = config.dropout
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        if cache is None:
            dropout = self.dropout_p if self.training else 0.0
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=dropout, scale=self.scale
            )
        else:
            start = cache.length
            end = start + T
            cache.keys[layer][:, :, start:end] = k
            cache.values[layer][:, :, start:end] = v
            k_all = cache.keys[layer][:, :, :end]
            v_all = cache.values[layer][:, :, :end]
            if T == 1:
                mask = None
            else:  # each new query sees the cached past and its own prefix
                mask = torch.ones(T, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
            y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask, scale=self.scale)
        return self.dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class SeedMLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, config.mlp_hidden)
        self.proj = nn.Linear(config.mlp_hidden, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.relu(self.fc(x))))


class SeedBlock(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd, eps=config.norm_eps)
        self.attn = SeedAttention(config)
        self.ln2 = nn.LayerNorm(config.n_embd, eps=config.norm_eps)
        self.mlp = SeedMLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, layer)
        return x + self.mlp(self.ln2(x))


class SeedModel(nn.Module):
    """The lecture GPT with StoryModel's interface (training loss, KV-cached generation).

    Learned positions stop at ``block_size``, so ``sliding_context`` tells the generator to
    re-encode the newest block every step past it, as the original ``generate`` did.
    ``original_tokens`` keeps it sampling from its whole vocabulary, as the original did, even
    tokens that break UTF-8: greedy decoding then repeats the original's tokens exactly.
    """

    sliding_context = True
    original_tokens = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.arch != "seed":
            raise ValueError(f"SeedModel builds arch 'seed', not {config.arch!r}")
        if config.n_embd % config.n_head:
            raise ValueError(f"n_embd {config.n_embd} is not divisible by n_head {config.n_head}")
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_embedding = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList(SeedBlock(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """The lecture's init: N(0, 0.02) weights, zero biases, default LayerNorm."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_cache(self, batch: int = 1, max_len: int | None = None, dtype=None) -> KVCache:
        weight = self.token_embedding.weight
        max_len = max_len or self.config.block_size
        return KVCache(self.config, batch, max_len, dtype or weight.dtype, weight.device)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for ``idx`` (B, T); with ``targets`` also the mean loss (-100 = ignored).

        With a ``cache`` the tokens take the positions after the cached ones; positions never
        exceed the block size (callers crop, as the original did).
        """
        T = idx.shape[1]
        start = cache.length if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"{start + T} tokens exceed the block size {self.config.block_size}")
        positions = torch.arange(start, start + T, device=idx.device)
        x = self.token_embedding(idx) + self.position_embedding(positions)
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        if cache is not None:
            cache.length = start + T
        return output_logits(self.lm_head, self.ln_f(x), targets, last_only)


# Per-block modules that only change name (weight and bias each).
LECTURE_RENAMES = {
    "ln1": "ln1",
    "ln2": "ln2",
    "sa.proj": "attn.proj",
    "ffwd.net.0": "mlp.fc",
    "ffwd.net.2": "mlp.proj",
}


def lecture_to_seed_state(
    lecture: dict[str, torch.Tensor], n_layer: int, n_head: int
) -> dict[str, torch.Tensor]:
    """Map a lecture-GPT state dict onto ``SeedModel``'s names (see the module docstring).

    Raises ``KeyError`` naming the first missing lecture key; ``tril`` buffers are dropped.
    """
    state = {
        "token_embedding.weight": lecture["token_embedding_table.weight"],
        "position_embedding.weight": lecture["position_embedding_table.weight"],
        "ln_f.weight": lecture["ln_f.weight"],
        "ln_f.bias": lecture["ln_f.bias"],
        "lm_head.weight": lecture["lm_head.weight"],
        "lm_head.bias": lecture["lm_head.bias"],
    }
    for i in range(n_layer):
        block = f"blocks.{i}."
        heads = [f"{block}sa.heads.{h}." for h in range(n_head)]
        parts = ("query", "key", "value")
        state[f"{block}attn.qkv.weight"] = torch.cat(
            [lecture[f"{head}{part}.weight"] for part in parts for head in heads]
        )
        for source, target in LECTURE_RENAMES.items():
            for param in ("weight", "bias"):
                state[f"{block}{target}.{param}"] = lecture[f"{block}{source}.{param}"]
    return state
