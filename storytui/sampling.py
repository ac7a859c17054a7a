"""Sampling settings and the logit processors that turn model scores into the next token.

Order of application (each step): valid-UTF-8 mask → repetition penalty → DRY → temperature →
top-k → top-p → min-p → draw. Temperature 0 means greedy (argmax after the penalties). Each
processor is a small pure function over a 1-D float32 logits tensor so that it can be
unit-tested on its own; the mask alone keeps state (``Utf8Guard``: the bytes a character still
owes), which generation advances after each token.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import torch

from storytui.errors import StoryError
from storytui.tokenizer import UTF8_INVALID, Utf8Table

DEFAULT_DRY_BREAKERS = ("\n", ":", '"', "*")


SEED_LIMIT = 2**63  # seeds are 0 .. SEED_LIMIT-1: what torch's generators take
MIN_TEMPERATURE = 1e-3  # below it scores overflow float32 (the choice is greedy long before)


@dataclass(frozen=True)
class SamplingSettings:
    """How to pick tokens; validated so a bad value is refused before anything runs."""

    temperature: float = 0.8
    top_k: int = 0  # 0 = off
    top_p: float = 0.95  # 1.0 = off
    min_p: float = 0.05  # 0.0 = off
    repetition_penalty: float = 1.1  # 1.0 = off
    repetition_window: int = 256
    dry_multiplier: float = 0.0  # 0.0 = off
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_breakers: tuple[str, ...] = DEFAULT_DRY_BREAKERS
    max_new_tokens: int = 200
    stop: tuple[str, ...] = ()
    seed: int | None = None  # None = a fresh random seed each time
    top_alternatives: int = 5  # alternatives reported per token for the app
    valid_utf8: bool = True  # sample only tokens that keep the text valid UTF-8

    def violations(self) -> list[tuple[str, str]]:
        """(attribute, rule) for every setting out of range; empty when all are allowed."""
        checks = [
            (
                self.temperature == 0 or MIN_TEMPERATURE <= self.temperature <= 100,
                "temperature",
                f"0 (greedy) or between {MIN_TEMPERATURE:g} and 100",
            ),
            (self.top_k >= 0, "top_k", ">= 0; 0 turns it off"),
            (0 < self.top_p <= 1, "top_p", "in (0, 1]"),
            (0 <= self.min_p < 1, "min_p", "in [0, 1)"),
            (0.1 <= self.repetition_penalty <= 10, "repetition_penalty", "between 0.1 and 10"),
            (self.repetition_window >= 0, "repetition_window", ">= 0"),
            (self.dry_multiplier >= 0, "dry_multiplier", ">= 0"),
            (self.dry_base >= 1, "dry_base", ">= 1"),
            (self.dry_allowed_length >= 1, "dry_allowed_length", ">= 1"),
            (1 <= self.max_new_tokens <= 100_000, "max_new_tokens", "between 1 and 100000"),
            (self.seed is None or 0 <= self.seed < SEED_LIMIT, "seed", "between 0 and 2**63-1"),
            (all(self.stop), "stop", "non-empty text; an empty stop string would stop at once"),
        ]
        return [(attr, rule) for ok, attr, rule in checks if not ok]

    def validate(self) -> SamplingSettings:
        """Self, or a StoryError naming the first setting out of range as its flag is spelt."""
        for attr, rule in self.violations():
            flag = FLAGS.get(attr, attr.replace("_", "-"))
            value = "" if attr == "stop" else getattr(self, attr)  # the one at fault, not all
            raise StoryError(f"invalid {flag}: {value!r} (must be {rule})")
        return self

    def with_changes(self, **changes) -> SamplingSettings:
        return replace(self, **changes).validate()

    def to_json(self) -> dict:
        data = asdict(self)
        data["dry_breakers"] = list(self.dry_breakers)
        data["stop"] = list(self.stop)
        return data

    @classmethod
    def from_json(cls, data: dict) -> SamplingSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("dry_breakers", "stop"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values).validate()


FLAGS = {  # attributes whose command-line flag is not their name
    "max_new_tokens": "max-tokens",
    "dry_multiplier": "dry",
}


PRESET_SETTINGS: dict[str, SamplingSettings] = {
    "balanced": SamplingSettings(),
    "focused": SamplingSettings(temperature=0.6, top_p=0.9, min_p=0.1, repetition_penalty=1.15),
    "creative": SamplingSettings(temperature=1.0, top_p=0.98, min_p=0.03, dry_multiplier=0.8),
    "greedy": SamplingSettings(temperature=0.0, repetition_penalty=1.0, min_p=0.0, top_p=1.0),
}


def apply_repetition_penalty(
    logits: torch.Tensor, history: list[int], penalty: float, window: int
) -> torch.Tensor:
    """CTRL-style: scores of tokens seen in the last ``window`` tokens move toward zero."""
    if penalty == 1.0 or not history or window == 0:
        return logits
    seen = np.unique(np.asarray(history[-window:], dtype=np.int64))
    out = logits.numpy().copy()  # numpy: torch's indexing costs tens of microseconds a call
    scores = out[seen]
    out[seen] = np.where(scores > 0, scores / penalty, scores * penalty)
    return torch.from_numpy(out)


def apply_dry(
    logits: torch.Tensor,
    history: list[int],
    multiplier: float,
    base: float,
    allowed_length: int,
    breakers: np.ndarray | None = None,
    window: int = 1024,
) -> torch.Tensor:
    """DRY ("don't repeat yourself"): penalise the token that would extend a repeat.

    For every earlier place where the text's newest ``n`` tokens already occurred, the token that
    followed there would make the repeat ``n + 1`` long; if ``n >= allowed_length`` its score
    drops by ``multiplier * base ** (n - allowed_length)``. Matches never cross a sequence breaker
    token (newline, quotes, ...), so dialogue and paragraph starts stay free.
    """
    if multiplier == 0 or len(history) < 2:
        return logits
    seq = np.asarray(history[-window:], dtype=np.int64)
    n = len(seq)
    is_breaker = breakers[seq] if breakers is not None else np.zeros(n, dtype=bool)
    # Candidate earlier positions i (< n-1): seq[i] == seq[-1]; the follower is seq[i + 1].
    ends = np.nonzero(seq[:-1] == seq[-1])[0]
    ends = ends[~is_breaker[ends]] if len(ends) else ends
    if is_breaker[-1] or len(ends) == 0:
        return logits
    lengths = np.ones(len(ends), dtype=np.int64)
    active = np.ones(len(ends), dtype=bool)
    k = 1
    while active.any() and k < n - 1:
        prev = ends - k
        ok = active & (prev >= 0)
        ok[ok] &= seq[prev[ok]] == seq[n - 1 - k]
        ok[ok] &= ~is_breaker[prev[ok]]
        lengths[ok] += 1
        active = ok
        k += 1
    followers = seq[ends + 1]
    penalties: dict[int, int] = {}
    for token, length in zip(followers.tolist(), lengths.tolist(), strict=True):
        if length >= allowed_length and length > penalties.get(token, 0):
            penalties[token] = length
    if not penalties:
        return logits
    logits = logits.clone()
    for token, length in penalties.items():
        logits[token] -= multiplier * base ** (length - allowed_length)
    return logits


def apply_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep exactly the ``k`` highest scores (ties broken by index order)."""
    if k <= 0 or k >= logits.numel():
        return logits
    keep = torch.topk(logits, k).indices
    out = torch.full_like(logits, -math.inf)
    out[keep] = logits[keep]
    return out


def apply_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probabilities sum to at least ``p``
    (tokens tied with the last one kept stay too)."""
    if p >= 1.0:
        return logits
    probs = _softmax(logits)
    return _drop(logits, probs < nucleus_floor(probs, p))


# Where to look for the nucleus first: tokens at least this fraction as likely as the top one.
# A trained model's nucleus nearly always lies among them (a few hundred tokens at most).
_NUCLEUS_GUESSES = (2.0**-8, 2.0**-16)


def nucleus_floor(probs: np.ndarray, p: float) -> float:
    """The smallest probability in the top-p nucleus of ``probs`` (1-D, summing to 1).

    Sorting 16K probabilities costs about 0.1 ms a token, so only the tokens above a threshold
    are sorted: if their mass reaches ``p`` the nucleus lies among them (it is the most likely
    tokens up to ``p``), else the threshold is lowered, down to the whole vocabulary (a flat
    distribution: an untrained model, a high temperature). The masses are summed in float64 in
    rank order, so every threshold finds the floor a full sort would.
    """
    top = float(probs.max())
    for guess in _NUCLEUS_GUESSES:
        ranked, cumulative = _ranked_mass(probs[probs >= top * guess])
        if cumulative[-1] >= p:
            break
    else:
        ranked, cumulative = _ranked_mass(probs)
    # a token stays if the mass before it is still short of p (the first always stays)
    return float(ranked[int(np.count_nonzero(cumulative - ranked < p)) - 1])


def _ranked_mass(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``probs`` from most to least likely, and their running total in float64."""
    ranked = np.sort(probs)[::-1]
    return ranked, np.cumsum(ranked, dtype=np.float64)


def apply_min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least ``min_p`` times the top token's."""
    if min_p <= 0:
        return logits
    probs = _softmax(logits)
    return _drop(logits, probs < min_p * probs.max())


def _softmax(logits: torch.Tensor) -> np.ndarray:
    """Probabilities of 1-D logits (``-inf`` gives 0) as a numpy array: torch's fused softmax
    is the fastest here, and numpy does the rest (on 16K scores each torch indexing call
    costs 15-30 µs, its numpy twin a few)."""
    return torch.softmax(logits, dim=-1).numpy()


def _drop(logits: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    """``logits`` with the masked entries at ``-inf``."""
    return torch.from_numpy(np.where(mask, np.float32(-math.inf), logits.numpy()))


class Utf8Guard:
    """Forbids each token whose bytes would break the text's UTF-8, given what it still owes.

    A byte-level vocabulary has tokens that are a lone continuation byte or half a character;
    sampled where they do not fit they show as U+FFFD. The mask comes first in the chain, on the
    model's own scores: the later processors then see valid tokens only (top-p and min-p keep
    at least the best of them, so something is always left to draw), and the probabilities and
    alternatives reported for a step are over valid tokens too.
    """

    def __init__(self, table: Utf8Table, state: int = 0) -> None:
        self._table = table
        # one tensor per (state, budget): indexing a torch tensor costs more than the add
        self._bias = [[torch.from_numpy(row) for row in rows] for rows in table.bias]
        self.state = state

    def mask(self, logits: torch.Tensor, remaining: int) -> torch.Tensor:
        """``logits`` with the tokens that cannot come next at ``-inf`` (the others unchanged);
        ``remaining`` tokens are left to generate, this one included, for the last character
        to end in."""
        return logits + self._bias[self.state][self._table.budget(self.state, remaining)]

    def advance(self, token: int) -> None:
        state = int(self._table.next_state[self.state, token])
        if state == UTF8_INVALID:
            raise StoryError(f"token {token} cannot follow UTF-8 state {self.state}")
        self.state = state


@dataclass
class SamplerState:
    """Per-stream state: the seeded random generator and the breaker table for DRY."""

    generator: torch.Generator
    breakers: np.ndarray | None = None
    seed: int = 0
    history: list[int] = field(default_factory=list)


def choose_token(logits: torch.Tensor, settings: SamplingSettings, state: SamplerState) -> int:
    """Apply the processors in order and draw one token from ``logits`` (1-D, float32)."""
    history = state.history
    logits = apply_repetition_penalty(
        logits, history, settings.repetition_penalty, settings.repetition_window
    )
    logits = apply_dry(
        logits,
        history,
        settings.dry_multiplier,
        settings.dry_base,
        settings.dry_allowed_length,
        state.breakers,
    )
    if settings.temperature == 0:
        return int(torch.argmax(logits))
    # from the top score down, so that a tiny temperature scales the others towards -inf
    # (close to greedy) instead of every score to ±inf and the probabilities to NaN
    logits = (logits - logits.max()) / settings.temperature
    logits = apply_top_k(logits, settings.top_k)
    logits = apply_top_p(logits, settings.top_p)
    logits = apply_min_p(logits, settings.min_p)
    return draw(torch.softmax(logits, dim=-1), state.generator)


def draw(probs: torch.Tensor, generator: torch.Generator) -> int:
    """One token id drawn from ``probs`` (1-D float32): the id ``torch.multinomial(probs, 1,
    generator=generator)`` returns, for a fraction of its cost.

    ``torch.multinomial`` races exponential variates, ``argmax(p / q)`` with one ``q`` per id,
    each ``-log1p(-u)`` of a float64 uniform ``u``; its serial exponential sampler takes ~0.4 ms
    at 16K ids. The same uniforms come from ``torch.rand`` (vectorised), and only the ids still
    in the running need their ``q`` (numpy: torch's indexing costs more than the arithmetic).
    Drawing one number per id, not per survivor, keeps the random stream in step whatever
    survives: a logit differing in its last bit (a cached
    against a fresh encoding) cannot shift the tokens after it, and a seed gives the original
    lecture loop's tokens (``tests/test_sampling.py`` checks the equality with
    ``torch.multinomial`` itself).
    """
    uniforms = torch.rand(probs.shape[0], dtype=torch.float64, generator=generator).numpy()
    values = probs.numpy()
    running = np.flatnonzero(values)
    races = (-np.log1p(-uniforms[running])).astype(np.float32)
    return int(running[np.argmax(values[running] / races)])
