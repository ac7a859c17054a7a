"""A faithful copy of the lecture GPT that seed checkpoints come from, for the seed tests.

Written from the original's description (module names, per-head attention scaled by
``n_embd ** -0.5``, pre-LayerNorm, ReLU MLP, dropout placements, learned positions, untied
``lm_head`` with bias) so that storytui's fused ``SeedModel`` is checked against an independent
implementation, never against itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from storytui.tokenizer import GPT2_VOCAB_ENV, Tokenizer, load_tokenizer

GPT2_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gpt2" / "gpt2.tiktoken"
GPT2_VOCAB_SIZE = 50_257

DEFAULT_HYPERPARAMETERS = {
    "block_size": 256,
    "n_emb": 512,
    "n_layer": 8,
    "n_head": 8,
    "dropout": 0.2,
}
SMALL_HYPERPARAMETERS = {"block_size": 32, "n_emb": 64, "n_layer": 2, "n_head": 4, "dropout": 0.2}


class Head(nn.Module):
    def __init__(self, n_embd: int, head_size: int, block_size: int, dropout: float) -> None:
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, T, C = x.shape
        k = self.key(x)
        q = self.query(x)
        wei = q @ k.transpose(-2, -1) * C**-0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        wei = F.softmax(wei, dim=-1)
        wei = self.dropout(wei)
        v = self.value(x)
        return wei @ v


class MultiHeadAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int, dropout: float) -> None:
        super().__init__()
        head_size = n_embd // n_head
        self.heads = nn.ModuleList(
            Head(n_embd, head_size, block_size, dropout) for _ in range(n_head)
        )
        self.proj = nn.Linear(n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([h(x) for h in self.heads], dim=-1)
        return self.dropout(self.proj(out))


class FeedForward(nn.Module):
    def __init__(self, n_embd: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd),
            nn.ReLU(),
            nn.Linear(4 * n_embd, n_embd),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int, dropout: float) -> None:
        super().__init__()
        self.sa = MultiHeadAttention(n_embd, n_head, block_size, dropout)
        self.ffwd = FeedForward(n_embd, dropout)
        self.ln1 = nn.LayerNorm(n_embd)
        self.ln2 = nn.LayerNorm(n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.sa(self.ln1(x))
        return x + self.ffwd(self.ln2(x))


class LectureGPT(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_emb: int,
        n_layer: int,
        n_head: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.block_size = block_size
        self.token_embedding_table = nn.Embedding(vocab_size, n_emb)
        self.position_embedding_table = nn.Embedding(block_size, n_emb)
        self.blocks = nn.Sequential(
            *[Block(n_emb, n_head, block_size, dropout) for _ in range(n_layer)]
        )
        self.ln_f = nn.LayerNorm(n_emb)
        self.lm_head = nn.Linear(n_emb, vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        tok_emb = self.token_embedding_table(idx)
        pos_emb = self.position_embedding_table(torch.arange(T, device=idx.device))
        x = tok_emb + pos_emb
        x = self.blocks(x)
        x = self.ln_f(x)
        return self.lm_head(x)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, greedy: bool) -> torch.Tensor:
        """The original loop; ``greedy`` takes the argmax instead of ``torch.multinomial``."""
        for _ in range(max_new_tokens):
            idx_cond = idx[:, -self.block_size :]
            logits = self(idx_cond)
            logits = logits[:, -1, :]
            probs = F.softmax(logits, dim=-1)
            if greedy:
                idx_next = torch.argmax(probs, dim=-1, keepdim=True)
            else:
                idx_next = torch.multinomial(probs, num_samples=1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx


def make_reference(vocab_size: int, hyperparameters: dict, seed: int = 0) -> LectureGPT:
    """A reference model with PyTorch's default init (large enough logits for clear argmaxes)."""
    torch.manual_seed(seed)
    return LectureGPT(vocab_size, **hyperparameters).eval()


def save_shape(path: Path, model: LectureGPT, hyperparameters: dict, shape: str) -> Path:
    """Save ``model`` the way the original scripts did: pretrain, periodic or finetuned."""
    vocab_size = model.token_embedding_table.num_embeddings
    if shape == "finetuned":
        payload = {"model_state_dict": model.state_dict(), "vocabulary_size": vocab_size}
    else:
        payload = {
            "model_state_dict": model.state_dict(),
            "vocabulary_size": vocab_size,
            "hyperparameters": dict(hyperparameters),
        }
    if shape == "periodic":
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
        for param in model.parameters():
            param.grad = torch.zeros_like(param)
        optimizer.step()  # fills the moment buffers; a zero gradient leaves the weights alone
        model.zero_grad(set_to_none=True)
        payload["iteration"] = 1500
        payload["optimizer_state_dict"] = optimizer.state_dict()
    torch.save(payload, path)
    return path


def use_gpt2_vocabulary(monkeypatch: pytest.MonkeyPatch) -> Tokenizer:
    """The GPT-2 vocabulary: $STORYTUI_GPT2_VOCAB, else the shared data copy, else skip."""
    if not os.environ.get(GPT2_VOCAB_ENV):
        if not GPT2_FILE.is_file():
            pytest.skip(f"no GPT-2 vocabulary (set {GPT2_VOCAB_ENV})")
        monkeypatch.setenv(GPT2_VOCAB_ENV, str(GPT2_FILE))
    return load_tokenizer("gpt2")
