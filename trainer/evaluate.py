"""`storytui models eval`: how well a model predicts held-out text and how varied its stories are.

Bits per byte is the headline figure because it doesn't depend on the vocabulary: the summed loss
(in bits) over a text divided by that text's UTF-8 bytes. Word-level perplexity (total loss over
whitespace-separated words) is comparable with the literature's WritingPrompts figures. For
generations we report distinct-2/3 (unique n-grams over all n-grams across samples) and the share
of 4-grams that repeat within a sample.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from storytui import paths
from storytui.errors import StoryError
from storytui.sampling import SamplingSettings
from storytui.story_format import StoryTemplate, format_story
from storytui.tokenizer import Tokenizer

EVAL_PROMPTS = (
    "A man in a sinking ship",
    "A woman hugging a child",
    "The last lighthouse keeper receives a letter from the sea",
    "You wake up and every clock in the world has stopped",
    "A dragon opens a bakery in a small village",
    "The detective realises the victim is herself",
    "Two old enemies are stranded on the same island",
    "A child finds a door in the back of the wardrobe that was not there yesterday",
)
SAMPLE_SEED = 1234
WORD_RE = re.compile(r"\w+|[^\w\s]")


@dataclass
class TextScore:
    """Summed loss over scored text, with the units needed to normalise it."""

    loss_nats: float = 0.0
    tokens: int = 0
    bytes: int = 0
    words: int = 0

    def add(self, other: TextScore) -> None:
        self.loss_nats += other.loss_nats
        self.tokens += other.tokens
        self.bytes += other.bytes
        self.words += other.words

    @property
    def bits_per_byte(self) -> float:
        return self.loss_nats / math.log(2) / self.bytes if self.bytes else float("nan")

    @property
    def word_perplexity(self) -> float:
        return math.exp(self.loss_nats / self.words) if self.words else float("nan")

    @property
    def token_loss(self) -> float:
        return self.loss_nats / self.tokens if self.tokens else float("nan")


@torch.inference_mode()
def score_tokens(
    model: nn.Module, ids: Sequence[int], scored_from: int, byte_lengths, block_size: int
) -> tuple[float, int, int]:
    """Loss (nats), token and byte counts of ``ids[scored_from:]`` predicted left to right.

    Sequences longer than the block are scored in windows that overlap by half a block, each
    target scored once with at least half a block of context (the usual strided evaluation).
    """
    ids_t = torch.tensor(list(ids), dtype=torch.long)
    lengths_t = torch.as_tensor(byte_lengths)
    total, count, nbytes = 0.0, 0, 0
    stride = max(1, block_size // 2)
    next_target = max(1, scored_from)
    while next_target < len(ids_t):
        end = min(len(ids_t), next_target + stride)
        if end <= block_size + 1:  # the first window may as well fill the whole block
            end = min(len(ids_t), block_size + 1)
        start = max(0, end - block_size - 1)
        window = ids_t[start:end]
        logits, _ = model(window[None, :-1])
        targets = window[1:]
        keep = torch.arange(start + 1, end) >= next_target
        lengths = lengths_t[targets]
        keep &= lengths > 0  # end-of-text carries no bytes: leave it out of bits per byte
        losses = nn.functional.cross_entropy(logits[0].float(), targets, reduction="none")
        total += float(losses[keep].sum())
        count += int(keep.sum())
        nbytes += int(lengths[keep].sum())
        next_target = end
    return total, count, nbytes


def score_pairs(
    model: nn.Module,
    tokenizer: Tokenizer,
    template: StoryTemplate,
    pairs: Iterable[dict],
    block_size: int,
    max_tokens: int,
) -> TextScore:
    """Score each story given its prompt, laid out exactly as finetuning and the app do."""
    score = TextScore()
    for pair in pairs:
        formatted = format_story(pair["story"], prompt=pair.get("prompt", ""), template=template)
        head = tokenizer.encode(formatted.header) if formatted.header else [tokenizer.eot]
        body = tokenizer.encode(formatted.story)
        score.add(_score_body(model, tokenizer, head, body, block_size, max_tokens - score.tokens))
        if score.tokens >= max_tokens:
            break
    return score


def score_texts(
    model: nn.Module, tokenizer: Tokenizer, texts: Iterable[str], block_size: int, max_tokens: int
) -> TextScore:
    """Score plain prose (held-out books) in up to ``max_tokens`` tokens."""
    score = TextScore()
    for text in texts:
        body = tokenizer.encode(text)
        room = max_tokens - score.tokens
        score.add(_score_body(model, tokenizer, [tokenizer.eot], body, block_size, room))
        if score.tokens >= max_tokens:
            break
    return score


def _score_body(
    model: nn.Module,
    tokenizer: Tokenizer,
    head: list[int],
    body: list[int],
    block_size: int,
    room: int,
) -> TextScore:
    """Score ``body`` after its context ``head``, cut to its first ``room`` tokens so that a
    corpus never scores more tokens than ``--max-tokens`` allows."""
    body = body[: max(0, room)]
    lengths = tokenizer.token_byte_lengths()
    loss, tokens, nbytes = score_tokens(model, head + body, len(head), lengths, block_size)
    return TextScore(loss, tokens, nbytes, len(tokenizer.decode(body).split()))


def ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(samples: Sequence[str], n: int) -> float:
    grams = [g for s in samples for g in ngrams(WORD_RE.findall(s.lower()), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_4gram_share(samples: Sequence[str]) -> float:
    """Mean over samples of the share of 4-grams that already occurred earlier in that sample."""
    shares = []
    for sample in samples:
        grams = ngrams(WORD_RE.findall(sample.lower()), 4)
        if not grams:
            continue
        seen: set[tuple[str, ...]] = set()
        repeats = 0
        for gram in grams:
            repeats += gram in seen
            seen.add(gram)
        shares.append(repeats / len(grams))
    return sum(shares) / len(shares) if shares else 0.0


@dataclass
class EvalReport:
    model: str
    split: str
    writingprompts: dict = field(default_factory=dict)
    gutenberg: dict = field(default_factory=dict)
    generation: dict = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _score_summary(score: TextScore) -> dict:
    return {
        "bits_per_byte": round(score.bits_per_byte, 4),
        "word_perplexity": round(score.word_perplexity, 2),
        "token_loss": round(score.token_loss, 4),
        "tokens": score.tokens,
        "bytes": score.bytes,
        "words": score.words,
    }


def load_pairs(split: str) -> list[dict]:
    path = paths.clean_dir("writingprompts") / f"{split}.jsonl"
    if not path.is_file():
        raise StoryError(
            f"no WritingPrompts {split} split at {path}: run `storytui data download writingprompts` first"
        )
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def heldout_book_texts() -> list[str]:
    """The books kept out of pretraining (the pretrain shards' validation split)."""
    from trainer.dataset import heldout_books

    return [path.read_text(encoding="utf-8") for path in heldout_books()]


def generate_samples(generator, prompts: Sequence[str], n: int, max_new_tokens: int) -> list[dict]:
    samples = []
    for index in range(n):
        prompt = prompts[index % len(prompts)]
        settings = SamplingSettings(seed=SAMPLE_SEED + index, max_new_tokens=max_new_tokens)
        text = generator.generate("", settings, prompt=prompt)
        samples.append({"prompt": prompt, "seed": settings.seed, "text": text})
    return samples


def evaluate(
    name: str | None,
    split: str = "valid",
    n_samples: int = 8,
    max_tokens: int = 100_000,
    sample_tokens: int = 200,
) -> EvalReport:
    from storytui.checkpoint import load_checkpoint, resolve_model
    from storytui.session import generator_for

    if split not in ("valid", "test"):
        raise StoryError(f"invalid split {split!r} (choose valid or test)")
    if n_samples < 0 or max_tokens <= 0:
        raise StoryError("--samples must be >= 0 and --max-tokens > 0")
    checkpoint = load_checkpoint(resolve_model(name))
    model, tokenizer, block = (
        checkpoint.model,
        checkpoint.tokenizer,
        checkpoint.meta.model.block_size,
    )
    report = EvalReport(model=checkpoint.name, split=split)
    wp = score_pairs(
        model, tokenizer, checkpoint.meta.template, load_pairs(split), block, max_tokens
    )
    report.writingprompts = _score_summary(wp)
    books = heldout_book_texts()
    if books:
        report.gutenberg = _score_summary(score_texts(model, tokenizer, books, block, max_tokens))
    if n_samples:
        generator = generator_for(checkpoint)
        report.samples = generate_samples(generator, EVAL_PROMPTS, n_samples, sample_tokens)
        texts = [s["text"] for s in report.samples]
        report.generation = {
            "distinct_2": round(distinct_n(texts, 2), 4),
            "distinct_3": round(distinct_n(texts, 3), 4),
            "repeated_4gram_share": round(repeated_4gram_share(texts), 4),
            "samples": n_samples,
            "tokens_per_sample": sample_tokens,
            "seed": SAMPLE_SEED,
        }
    return report
