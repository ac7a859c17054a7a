"""Streaming generation: text in, text deltas out, one token at a time.

``Generator.stream`` yields UTF-8-safe text deltas as the model produces them; ``stream_events``
yields richer ``TokenEvent``s (the token, its probability, the top alternatives) for the app.
Both honour a cancel event between tokens, cut at stop strings, and keep working past the
model's block size by keeping the story's head (prompt, memory) and its newest tail.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from storytui.allocator import keep_freed_memory, release_freed_memory
from storytui.errors import StoryError
from storytui.model import KVCache
from storytui.precision import DEFAULT_PRECISION, PRECISIONS, kv_cache_dtype, prepare_model
from storytui.sampling import SamplerState, SamplingSettings, Utf8Guard, choose_token
from storytui.story_format import StoryTemplate, format_story
from storytui.tokenizer import Tokenizer

__all__ = [
    "DEFAULT_PRECISION",
    "PRECISIONS",
    "Alternative",
    "GenerationStats",
    "Generator",
    "TokenEvent",
    "prepare_model",
]


@dataclass(frozen=True)
class Alternative:
    token: int
    text: str
    prob: float


@dataclass(frozen=True)
class TokenEvent:
    """One generated token: ``text`` is the delta it made visible (may be '' mid-character)."""

    token: int
    text: str
    prob: float
    alternatives: tuple[Alternative, ...] = ()


@dataclass
class GenerationStats:
    context_tokens: int = 0
    reused_tokens: int = 0  # context tokens whose keys and values came from the previous call
    new_tokens: int = 0
    prefill_seconds: float = 0.0
    first_token_seconds: float = 0.0
    decode_seconds: float = 0.0
    seed: int = 0
    stopped_by: str = ""  # max_tokens | stop_string | eot | cancelled
    stop_string: str = ""  # the stop string that ended it (stopped_by == "stop_string")

    @property
    def tokens_per_second(self) -> float:
        decoded = max(self.new_tokens - 1, 0)
        return decoded / self.decode_seconds if self.decode_seconds > 0 else 0.0


PREFILL_CHUNK = 128  # tokens per model call when encoding ahead: the longest a cancel waits
HEALED_BYTES = 2  # trailing whitespace the model writes again: a space, a blank line's "\n\n"


@dataclass
class _Context:
    """Token ids the model conditions on: a fixed head plus the growing story tail."""

    head: list[int]
    tail: list[int] = field(default_factory=list)


@dataclass
class _Prefix:
    """What the KV cache holds after a call, so the next one only encodes what changed.

    A writer continues the same story again and again: the cache already holds its tokens.
    ``logits`` belong to ``ids`` exactly (a retry with the same text is bit-for-bit the same).
    """

    cache: KVCache
    ids: list[int]  # the context (encoded up to ``cache.length``)
    logits: torch.Tensor | None  # None while the context is only partly encoded
    fed: list[int] = field(default_factory=list)  # generated tokens fed after it

    def cached_ids(self) -> list[int]:
        """Token ids whose keys and values sit in the cache, in order."""
        return (self.ids + self.fed)[: self.cache.length]


class Generator:
    """Continues stories with one model; create once, stream many times.

    One call runs at a time: a caller in another thread waits for the running one to finish
    (a stream holds the model until it is exhausted or closed). So an app can ``prefill`` the
    writer's story in the background while they type, and a continuation asked for meanwhile
    starts from whatever that left in the cache.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        template: StoryTemplate | None = None,
        precision: str = "fp32",
    ) -> None:
        keep_freed_memory()  # else each cold prefill faults ~63,000 pages in again
        self.model = prepare_model(model, precision)
        release_freed_memory()  # what converting the weights freed
        self.precision = precision
        self.tokenizer = tokenizer
        self.template = template or StoryTemplate()
        self._last_header: tuple[tuple[str, str], tuple[str, str, list[int]]] | None = None
        self.config = model.config
        self.block_size = self.config.block_size
        # Learned-position models (seed) must see exactly the last block, like their original code.
        self.sliding = bool(getattr(model, "sliding_context", False))
        # Imported seed models keep the original's tokens: no UTF-8 guard, no healing.
        self.original_tokens = bool(getattr(model, "original_tokens", False))
        self._heal_bias: dict[bytes, torch.Tensor] = {}
        self.last_stats = GenerationStats()
        self._breakers: dict[tuple[str, ...], np.ndarray] = {}
        self._prefix: _Prefix | None = None
        # The KV cache serves one caller at a time. A plain lock, because a stream may be
        # finished (or closed by the garbage collector) in another thread than it started in.
        self._busy = threading.Lock()
        self._busy_thread: int | None = None

    # ------------------------------------------------------------------ public API

    def stream(self, text: str, settings: SamplingSettings, **kwargs) -> Iterator[str]:
        """Yield text deltas continuing ``text`` (see ``stream_events`` for keyword args)."""
        for event in self.stream_events(text, settings, **kwargs):
            if event.text:
                yield event.text

    def generate(self, text: str, settings: SamplingSettings, **kwargs) -> str:
        return "".join(self.stream(text, settings, **kwargs))

    def context_ids(
        self, text: str, prompt: str = "", memory: str = ""
    ) -> tuple[list[int], list[int]]:
        """(head, story) token ids exactly as finetuning tokenised them: header, then story;
        a prompt and memory too long for ``header_limit`` lose their ends, never the
        template's lines (``fit_conditioning``)."""
        _, _, head = self._fit_header(prompt, memory)
        return list(head), self.tokenizer.encode(text)  # a copy: the last header is kept

    @property
    def header_limit(self) -> int:
        """Tokens the prompt and memory header may take: half of what is left of the block
        with the most room a continuation reserves (a quarter), so the story always keeps at
        least as much."""
        return (self.block_size - self.block_size // 4) // 2

    def fit_conditioning(self, prompt: str, memory: str) -> tuple[str, str]:
        """The prompt and memory as the model sees them: stripped, and where their header
        would pass ``header_limit``, cut at their ends to fit: the shorter kept whole if it
        takes at most half of the room, else both cut to half. Cutting the header's tokens
        instead would drop its last lines, the memory and the ``[Story]`` line that tells the
        model where the story starts."""
        prompt, memory, _ = self._fit_header(prompt, memory)
        return prompt, memory

    def conditioning_cut(self, prompt: str, memory: str) -> list[str]:
        """Which of "prompt" and "memory" ``fit_conditioning`` leaves the end out of, so that
        the CLI and the app can say so."""
        fitted = self.fit_conditioning(prompt, memory)
        given = (prompt.strip(), memory.strip())
        return [
            name for name, g, f in zip(("prompt", "memory"), given, fitted, strict=True) if g != f
        ]

    def _fit_header(self, prompt: str, memory: str) -> tuple[str, str, list[int]]:
        """``fit_conditioning``'s prompt and memory, and the header's token ids. The last
        answer is kept: the status bar asks for it (context and cut) on every keystroke, while
        the prompt and memory seldom change."""
        key = (prompt, memory)
        last = self._last_header
        if last is not None and last[0] == key:
            return last[1]
        fitted = self._fit_header_anew(prompt, memory)
        self._last_header = (key, fitted)
        return fitted

    def _fit_header_anew(self, prompt: str, memory: str) -> tuple[str, str, list[int]]:
        prompt, memory = prompt.strip(), memory.strip()
        while True:
            header = format_story("", prompt=prompt, memory=memory, template=self.template)
            head = self.tokenizer.encode(header.header) if header.header else []
            over = len(head) - self.header_limit
            if over <= 0 or self.sliding:  # the original's window cuts its own way
                return prompt, memory, head
            prompt_ids, memory_ids = self.tokenizer.encode(prompt), self.tokenizer.encode(memory)
            room = len(prompt_ids) + len(memory_ids) - over  # for the two texts together
            shorter = min(min(len(prompt_ids), len(memory_ids)), max(room, 0) // 2)
            longer = room - shorter
            prompt_keep, memory_keep = (
                (shorter, longer) if len(memory_ids) >= len(prompt_ids) else (longer, shorter)
            )
            prompt = self._cut_text(prompt_ids, prompt_keep)
            memory = self._cut_text(memory_ids, memory_keep)

    def _cut_text(self, ids: list[int], keep: int) -> str:
        """The text of the first ``keep`` of ``ids``, without a character cut in half."""
        data = b"".join(self.tokenizer.token_bytes(token) for token in ids[: max(keep, 0)])
        return data.decode("utf-8", errors="ignore").strip()

    def prefill(
        self,
        text: str,
        settings: SamplingSettings,
        *,
        prompt: str = "",
        memory: str = "",
        cancel: threading.Event | None = None,
    ) -> int:
        """Encode the context a continuation of ``text`` would start from, ahead of time.

        The next ``stream_events`` with the same arguments then finds every context token in
        the cache and draws its first token at once; after more typing at the end of a story
        that fits the window only the new tokens are encoded. Works in ``PREFILL_CHUNK``-token
        steps and stops between them once ``cancel`` is set, keeping what it encoded for the
        next call. Returns how many tokens this call encoded (0: already cached).
        """
        settings = settings.validate()
        head, story = self.context_ids(text, prompt, memory)
        story, _ = self.heal(story)
        context = self.fit_context(head, story, settings.max_new_tokens)
        stats = GenerationStats()
        with self._exclusive(), torch.inference_mode():
            if cancel is not None and cancel.is_set():
                return 0
            cache, _ = self._prefill(context, stats, cancel=cancel, chunk=PREFILL_CHUNK)
            return cache.length - stats.reused_tokens

    def stream_events(
        self,
        text: str,
        settings: SamplingSettings,
        *,
        prompt: str = "",
        memory: str = "",
        cancel: threading.Event | None = None,
    ) -> Iterator[TokenEvent]:
        settings = settings.validate()
        requested = time.perf_counter()  # the first-token wait counts from here, queueing too
        with self._exclusive():
            yield from self._stream_events(text, settings, prompt, memory, cancel, requested)

    def _stream_events(
        self,
        text: str,
        settings: SamplingSettings,
        prompt: str,
        memory: str,
        cancel: threading.Event | None,
        requested: float,
    ) -> Iterator[TokenEvent]:
        stats = GenerationStats()
        self.last_stats = stats
        seed = (
            settings.seed if settings.seed is not None else random.SystemRandom().randrange(2**63)
        )
        stats.seed = seed
        generator = torch.Generator().manual_seed(seed)
        head, story = self.context_ids(text, prompt, memory)
        story, owed = self.heal(story)
        state = SamplerState(
            generator=generator,
            breakers=self._breaker_table(settings.dry_breakers)
            if settings.dry_multiplier
            else None,
            seed=seed,
            history=list(story),
        )
        stops = tuple(settings.stop) + self.template.stop_strings
        decoder = self.tokenizer.stream_decoder()
        pending = ""  # text held back because it may be the start of a stop string
        context = self.fit_context(head, story, settings.max_new_tokens)
        stats.context_tokens = len(context.head) + len(context.tail)
        guarded = settings.valid_utf8 and not self.original_tokens
        utf8 = self._utf8_guard(context) if guarded else None

        started = decode_started = time.perf_counter()
        with torch.inference_mode():
            cache, logits = self._prefill(context, stats)
            stats.prefill_seconds = time.perf_counter() - started
            for step in range(settings.max_new_tokens):
                if cancel is not None and cancel.is_set():
                    stats.stopped_by = "cancelled"
                    break
                if utf8 is not None:
                    logits = utf8.mask(logits, settings.max_new_tokens - step)
                if owed:
                    logits = logits + self._healing_bias(owed)
                probs_raw = torch.softmax(logits, dim=-1)
                token = choose_token(logits, settings, state)
                stats.new_tokens += 1
                if step == 0:
                    stats.first_token_seconds = time.perf_counter() - requested
                    decode_started = time.perf_counter()
                if token == self.tokenizer.eot:
                    stats.stopped_by = "eot"
                    break
                if utf8 is not None:
                    utf8.advance(token)
                state.history.append(token)
                alternatives = self._alternatives(probs_raw, settings.top_alternatives, owed)
                if owed:  # the story already shows the whitespace this token starts with
                    piece = self.tokenizer.token_bytes(token)
                    pending += decoder.push_bytes(piece[len(owed) :])
                    owed = owed[len(piece) :]
                else:
                    pending += decoder.push(token)
                visible, hit = _split_at_stop(pending, stops)
                event = TokenEvent(
                    token=token,
                    text=visible,
                    prob=float(probs_raw[token]),
                    alternatives=alternatives,
                )
                pending = pending[len(visible) :]
                yield event
                if hit:  # what is left of the text begins with the stop string
                    stats.stopped_by = "stop_string"
                    stats.stop_string = next((s for s in stops if pending.startswith(s)), "")
                    pending = ""
                    break
                if step + 1 == settings.max_new_tokens:
                    stats.stopped_by = "max_tokens"
                    break
                context.tail.append(token)
                cache, logits = self._advance(context, cache, token)
            stats.decode_seconds = time.perf_counter() - decode_started
        if stats.stopped_by == "stop_string":
            tail = ""
        elif utf8 is not None and utf8.state:  # cancelled mid-character: drop its first bytes
            tail = pending
        else:
            tail = pending + decoder.flush()
        if tail:
            yield TokenEvent(token=-1, text=tail, prob=1.0)

    def forget_context(self) -> None:
        """Drop the KV cache kept from the last call: frees its memory; the next call starts cold."""
        with self._exclusive():
            self._prefix = None

    # ------------------------------------------------------------------ internals

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the model for one call; a second call from the thread that holds it (a stream
        left paused) would otherwise wait for itself forever, so it is refused instead."""
        if self._busy_thread == threading.get_ident():
            raise StoryError(
                "this generator is still streaming in this thread: finish or close that stream"
            )
        with self._busy:
            self._busy_thread = threading.get_ident()
            try:
                yield
            finally:
                self._busy_thread = None

    def heal(self, story: list[int]) -> tuple[list[int], bytes]:
        """The story without its trailing whitespace (at most its last ``HEALED_BYTES``), and
        those bytes, which the first generated tokens must then spell out.

        Pre-tokenisation glues a space to the word after it (" The"), and a blank line before
        a word is "\n", "\n": a story that ends in " " or "\n\n" ends in a token the model
        has hardly seen in that place (it wrote "ing…" at the start of a new paragraph). Taken
        back, the model writes the whitespace itself, in the tokens it was trained on, and only
        what follows it is shown. A longer run keeps the rest in the story, re-encoded: each
        byte taken back costs the continuation a token.

        Other whitespace (a tab, a form feed) is all but absent from the training text: after
        it the model writes fragments and combining marks. A run holding any is taken back
        whole and the model writes what it knows in its place, a blank line if the run breaks
        the line, else a space; a story of whitespace alone starts as an empty one does.
        """
        if self.original_tokens:
            return story, b""
        end = len(story)
        while end and self.tokenizer.token_bytes(story[end - 1]).isspace():
            end -= 1
        if not end:
            return [], b""
        run = b"".join(self.tokenizer.token_bytes(token) for token in story[end:])
        if run.strip(b" \n"):
            return story[:end], b"\n\n" if b"\n" in run else b" "
        if len(run) <= HEALED_BYTES:
            return story[:end], run
        kept = self.tokenizer.encode(run[:-HEALED_BYTES].decode("ascii"))
        return story[:end] + kept, run[-HEALED_BYTES:]

    def fit_context(self, head: list[int], story: list[int], max_new: int) -> _Context:
        """The part of (head, story) the model sees: prompt and memory, then the story's tail,
        leaving room for ``max_new`` tokens (up to a quarter of the block).

        A story longer than that loses its start in steps of ``block_size // 16`` tokens, so
        that the window (and the KV cache holding it) stays put while the writer adds a few
        words at the end; it moves once a step's worth has been written.
        """
        if self.sliding:  # the original's idx[:, -block_size:]; an empty story starts at EOT
            window = (head + story)[-self.block_size :]
            return _Context(head=[], tail=window or [self.tokenizer.eot])
        room = min(max_new, self.block_size // 4)
        budget = self.block_size - room
        head = head[: budget // 2]
        tail = story
        overflow = len(story) - (budget - len(head))
        if overflow > 0:
            step = max(1, self.block_size // 16)
            dropped = -(-overflow // step) * step  # whole steps, at least the overflow
            tail = story[dropped:]
        if not head and not tail:
            tail = [self.tokenizer.eot]  # an empty story starts like a fresh document
        return _Context(head=head, tail=tail)

    def _prefill(
        self,
        context: _Context,
        stats: GenerationStats | None = None,
        cancel: threading.Event | None = None,
        chunk: int | None = None,
    ):
        """Encode the context into a KV cache, reusing the previous call's longest common prefix.

        With ``chunk``, encodes that many tokens per model call and stops between calls once
        ``cancel`` is set: the cache then holds a prefix of the context and the logits are None;
        the next call reuses that prefix like any other.
        """
        ids = context.head + context.tail
        prefix, self._prefix = self._prefix, None
        if prefix is not None and prefix.ids == ids and prefix.cache.length >= len(ids):
            cache, logits, reused = prefix.cache, prefix.logits, len(ids)
            cache.length = len(ids)
        else:
            if prefix is None:
                cache = self.model.new_cache(1, self.block_size, dtype=self._cache_dtype())
                reused = 0
            else:  # keep the shared start; the last token is encoded again for its logits
                cache = prefix.cache
                reused = min(_common_length(prefix.cached_ids(), ids), len(ids) - 1)
            cache.length = reused
            logits = None
            step = chunk or len(ids)
            for start in range(reused, len(ids), step):
                if cancel is not None and cancel.is_set():
                    break
                piece = torch.tensor([ids[start : start + step]])
                out, _ = self.model(piece, cache=cache, last_only=True)
                logits = out[0, -1].float() if start + step >= len(ids) else None
        if stats is not None:
            stats.reused_tokens = reused
        self._prefix = _Prefix(cache=cache, ids=ids, logits=logits)
        return cache, logits

    def _advance(self, context: _Context, cache, token: int):
        """Feed one token; past the block size, re-encode what still fits."""
        if cache is not None and cache.length < self.block_size:
            logits, _ = self.model(torch.tensor([[token]]), cache=cache, last_only=True)
            if self._prefix is not None and self._prefix.cache is cache:
                self._prefix.fed.append(token)
            return cache, logits[0, -1].float()
        if self.sliding:  # learned positions: the last block, re-encoded every step
            window = (context.head + context.tail)[-self.block_size :]
            logits, _ = self.model(torch.tensor([window]), last_only=True)
            return None, logits[0, -1].float()
        # rotary positions: keep the head, cut the tail so a quarter of the block is free, re-encode
        keep = self.block_size * 3 // 4 - len(context.head)
        context.tail = context.tail[-keep:]
        return self._prefill(context)

    def _cache_dtype(self) -> torch.dtype:
        return kv_cache_dtype(self.precision)

    def _utf8_guard(self, context: _Context) -> Utf8Guard:
        """A mask that starts where the context's own bytes leave off (maybe mid-character)."""
        table = self.tokenizer.utf8_table(self.config.vocab_size)
        return Utf8Guard(table, self.tokenizer.utf8_state(context.head + context.tail))

    def _healing_bias(self, owed: bytes) -> torch.Tensor:
        """0 for the tokens that spell out ``owed`` (start with it, or are a start of it),
        ``-inf`` for the others: built once per run of whitespace."""
        if owed not in self._heal_bias:
            bias = torch.full((self.config.vocab_size,), float("-inf"))
            for token in range(self.tokenizer.eot):
                piece = self.tokenizer.token_bytes(token)
                if piece.startswith(owed) or owed.startswith(piece):
                    bias[token] = 0.0
            self._heal_bias[owed] = bias
        return self._heal_bias[owed]

    def _alternatives(
        self, probs: torch.Tensor, k: int, owed: bytes = b""
    ) -> tuple[Alternative, ...]:
        """The top ``k`` tokens with their text as it would show: after the whitespace a
        healed token starts with (one that is only part of it would show nothing: left out)."""
        if k <= 0:
            return ()
        top = torch.topk(probs, k)
        alternatives = []
        for p, t in zip(top.values, top.indices, strict=True):
            if p <= 0:  # fewer than k tokens may be allowed here (mid-character)
                continue
            piece = self.tokenizer.token_bytes(int(t))
            if owed and len(piece) <= len(owed):
                continue
            text = piece[len(owed) :].decode("utf-8", errors="replace")
            alternatives.append(Alternative(int(t), text, float(p)))
        return tuple(alternatives)

    def _breaker_table(self, breakers: tuple[str, ...]) -> np.ndarray:
        """Boolean per token id: does its text contain a DRY sequence breaker?"""
        if breakers not in self._breakers:
            table = np.zeros(self.config.vocab_size, dtype=bool)
            needles = [b.encode() for b in breakers]
            for token in range(self.tokenizer.eot):
                piece = self.tokenizer.token_bytes(token)
                table[token] = any(n in piece for n in needles)
            table[self.tokenizer.eot :] = True
            self._breakers[breakers] = table
        return self._breakers[breakers]


def _common_length(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of two token lists."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _split_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """(text safe to show, whether a stop string was hit).

    Text that could still grow into a stop string is held back until it can't.
    """
    if not stops:
        return text, False
    cut = min((text.find(s) for s in stops if s in text), default=-1)
    if cut >= 0:
        return text[:cut], True
    hold = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                hold = max(hold, size)
                break
    return text[: len(text) - hold], False
