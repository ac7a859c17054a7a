"""How fast storytui generates on this CPU, next to Hugging Face transformers and a no-cache loop.

    .venv/bin/python bench/bench_generate.py                 # the speed table (about 5 minutes)
    .venv/bin/python bench/bench_generate.py --loss-gap CHECKPOINT_DIR --text FILE

The speed run builds the ``colab`` preset with random weights (speed does not depend on them),
then for each precision (fp32, bf16, int8, int4) measures: prefill of a 1,000-token context,
the first token of a 1,000-token story through ``Generator`` (what a writer waits for), greedy
decode tokens/s over 200 new tokens after an 824-token context (1,024 is the block), the full
``Generator`` path with the default sampling settings, and the same model with no KV cache. The Hugging Face twin is a
``LlamaForCausalLM`` holding the same weights (its logits are checked against StoryModel first)
driven through ``generate()``. Decode speed is compared with the memory-bandwidth ceiling:
measured read bandwidth ÷ (weight bytes + KV-cache bytes read per token).

``--loss-gap`` measures what the reduced precisions cost: per-token loss (nats) and bits per
byte of each precision over block-sized windows of a real text; int4 both through its decoding
kernel at every position and with each window's first half encoded in int8 and in bf16 (the
two encoders it chooses between), the rest decoded.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
from _common import (
    cpu_pressure,
    kv_bytes,
    llama_twin,
    machine_report,
    median_seconds,
    median_value,
    quiet_sample,
    read_bandwidth,
    scratch_home,
    weight_bytes,
)
from torch_int4 import quantize_torch_int4

from storytui import precision as precision_module
from storytui.allocator import keep_freed_memory
from storytui.generation import DEFAULT_PRECISION, Generator
from storytui.model import PRESETS, StoryModel
from storytui.precision import PRECISIONS, Int4Model, kv_cache_dtype, prepare_model
from storytui.sampling import PRESET_SETTINGS, SamplingSettings
from storytui.tokenizer import load_tokenizer

STORY_SOURCE = Path("/work/shared/data/gutenberg/pg2701-moby-dick.txt")
GREEDY = SamplingSettings(temperature=0.0, repetition_penalty=1.0, top_p=1.0, min_p=0.0)


@dataclass
class Row:
    engine: str
    precision: str
    decode_tps: float
    prefill_ms: float | None = None
    first_token_ms: float | None = None
    bytes_per_token: int = 0
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- storytui


def storytui_decode_tps(model, prompt: torch.Tensor, new_tokens: int, cache_dtype) -> float:
    """Greedy tokens/s of the cached model loop (no sampling), after encoding ``prompt``."""
    cache = model.new_cache(1, dtype=cache_dtype)
    logits, _ = model(prompt, cache=cache, last_only=True)
    token = logits[0, -1].argmax().view(1, 1)
    start = time.perf_counter()
    for _ in range(new_tokens):
        logits, _ = model(token, cache=cache, last_only=True)
        token = logits[0, -1].argmax().view(1, 1)
    return new_tokens / (time.perf_counter() - start)


def no_cache_tps(model, prompt: torch.Tensor, steps: int) -> float:
    """Greedy tokens/s when every token re-encodes the whole context."""
    ids = prompt
    start = time.perf_counter()
    for _ in range(steps):
        logits, _ = model(ids, last_only=True)
        ids = torch.cat([ids, logits[0, -1].argmax().view(1, 1)], dim=1)
    return steps / (time.perf_counter() - start)


def generator_timings(generator: Generator, story: str, settings: SamplingSettings, repeats: int):
    """Median (first-token seconds, decode tokens/s) of cold ``stream_events`` runs."""

    def run(settings: SamplingSettings = settings) -> tuple[float, float]:
        generator.forget_context()
        for _event in generator.stream_events(story, settings):
            pass
        return generator.last_stats.first_token_seconds, generator.last_stats.tokens_per_second

    run(settings.with_changes(max_new_tokens=min(8, settings.max_new_tokens)))  # warm-up
    samples = [quiet_sample(run)[0] for _ in range(repeats)]
    first = statistics.median(s[0] for s in samples)
    rate = statistics.median(s[1] for s in samples)
    return first, rate, generator.last_stats


def bench_storytui(base, tokenizer, story_ids, args, rows: list[Row]) -> None:
    cfg = base.config
    long_prompt = torch.tensor([story_ids[: args.context]])
    decode_context = cfg.block_size - args.new_tokens
    prompt = torch.tensor([story_ids[:decode_context]])
    story_1000 = tokenizer.decode(story_ids[: args.context])
    story_long = tokenizer.decode(story_ids[: cfg.block_size + 100])  # past the block
    mean_positions = decode_context + args.new_tokens / 2
    sampled = PRESET_SETTINGS["balanced"].with_changes(seed=1, max_new_tokens=args.new_tokens)
    for precision in args.precisions:
        generator = Generator(copy.deepcopy(base), tokenizer, precision=precision)
        model = generator.model
        cache_dtype = kv_cache_dtype(precision)
        kv_size = torch.tensor([], dtype=cache_dtype).element_size()
        nbytes = weight_bytes(model) + kv_bytes(cfg.n_layer, cfg.kv_width, mean_positions, kv_size)
        with torch.inference_mode():

            def prefill(model=model, cache_dtype=cache_dtype):
                model(long_prompt, cache=model.new_cache(1, dtype=cache_dtype), last_only=True)

            prefill_s = median_seconds(prefill, args.repeats)
            storytui_decode_tps(model, prompt, 8, cache_dtype)  # warm-up
            tps = median_value(
                lambda model=model, cache_dtype=cache_dtype: storytui_decode_tps(
                    model, prompt, args.new_tokens, cache_dtype
                ),
                args.repeats,
            )
            slow = quiet_sample(
                lambda model=model: no_cache_tps(model, prompt, args.no_cache_steps)
            )[0]
        room = cfg.block_size - args.context  # leaves exactly args.context tokens of story
        first_s, _, stats = generator_timings(
            generator, story_1000, GREEDY.with_changes(max_new_tokens=room), args.repeats
        )
        context_note = f"{stats.context_tokens}-token context"
        _, stream_tps, _ = generator_timings(generator, story_long, sampled, args.repeats)
        retry_s = _retry_first_token(generator, story_1000, room)
        typed_s = _typed_first_token(generator, tokenizer, story_ids[: args.context], room)
        rows.append(Row("storytui", precision, tps, prefill_s * 1e3, first_s * 1e3, nbytes))
        rows.append(
            Row(
                "storytui Generator.stream (balanced sampling)",
                precision,
                stream_tps,
                None,
                first_s * 1e3,
                nbytes,
                [
                    f"first token {context_note}; retry of the same text {retry_s * 1e3:.1f} ms; "
                    f"F5 right after typing {TYPED_TOKENS} tokens past the app's last "
                    f"encode-ahead {typed_s * 1e3:.0f} ms"
                ],
            )
        )
        rows.append(Row("no-cache loop", precision, slow, None, None, 0))
        print(
            f"  storytui {precision}: prefill {prefill_s * 1e3:.0f} ms, first token "
            f"{first_s * 1e3:.0f} ms ({context_note}), decode {tps:.1f} tok/s, "
            f"Generator.stream {stream_tps:.1f} tok/s, no-cache {slow:.2f} tok/s "
            f"[CPU pressure {cpu_pressure()}]",
            flush=True,
        )
        del model, generator


def _first_token_seconds(generator: Generator, story: str, settings: SamplingSettings) -> float:
    for _event in generator.stream_events(story, settings):
        pass
    return generator.last_stats.first_token_seconds


def _median_after_warmup(run: Callable[[], float]) -> float:
    run()
    return statistics.median(quiet_sample(run)[0] for _ in range(3))


def _retry_first_token(generator: Generator, story: str, room: int) -> float:
    """First-token seconds when the same story is continued again (its prefix is cached)."""
    settings = GREEDY.with_changes(max_new_tokens=room)
    return _median_after_warmup(lambda: _first_token_seconds(generator, story, settings))


TYPED_TOKENS = 20  # a sentence typed since the app's last encode-ahead


def _typed_first_token(generator: Generator, tokenizer, story_ids: list[int], room: int) -> float:
    """First-token seconds in the app: the story was encoded during the writer's last pause
    (``Generator.prefill``), then they typed a sentence and pressed F5 straight away."""
    settings = GREEDY.with_changes(max_new_tokens=room)
    before = tokenizer.decode(story_ids[:-TYPED_TOKENS])
    story = tokenizer.decode(story_ids)

    def run() -> float:
        generator.forget_context()
        generator.prefill(before, settings)
        return _first_token_seconds(generator, story, settings)

    return _median_after_warmup(run)


def long_story_first_tokens(base, tokenizer, story_ids: list[int]) -> None:
    """F5 in a story longer than the block, at the default precision: cold, and right after
    typing ``TYPED_TOKENS`` more tokens at the end (no pause, so no encode-ahead). The window
    over the story moves in steps of block/16 tokens, so the typed tokens usually leave the
    cached window in place; each story length below ends at another point of a step."""
    generator = Generator(copy.deepcopy(base), tokenizer, precision=DEFAULT_PRECISION)
    settings = PRESET_SETTINGS["balanced"].with_changes(seed=1, max_new_tokens=8)
    block = base.config.block_size
    step = block // 16  # how far the window moves at a time
    cold, typed = [], []
    with torch.inference_mode():
        for length in range(2 * block, 2 * block + step, step // 4):
            before = tokenizer.decode(story_ids[: length - TYPED_TOKENS])
            story = tokenizer.decode(story_ids[:length])
            generator.forget_context()
            generator.generate(before, settings)
            cold.append(generator.last_stats.first_token_seconds)
            generator.generate(story, settings)
            typed.append(generator.last_stats)
    print(
        f"\nF5 in a story of {2 * base.config.block_size:,}+ tokens ({DEFAULT_PRECISION}, "
        "balanced sampling): cold first token "
        + ", ".join(f"{c * 1e3:.0f}" for c in cold)
        + f" ms; right after typing {TYPED_TOKENS} tokens "
        + ", ".join(f"{t.first_token_seconds * 1e3:.0f}" for t in typed)
        + " ms (tokens reused: "
        + ", ".join(f"{t.reused_tokens}/{t.context_tokens}" for t in typed)
        + ")"
    )


# ---------------------------------------------------------------------- transformers


def bench_transformers(base, story_ids, args, rows: list[Row]) -> None:
    try:
        twin = llama_twin(base)
    except ImportError:
        print("  transformers is not installed (pip install -e '.[bench]'): skipped")
        return
    check = torch.tensor([story_ids[:256]])
    with torch.inference_mode():
        diff = (base(check)[0] - twin(check).logits).abs().max().item()
    print(f"  Llama twin logits vs StoryModel (fp32, 256 tokens): max |diff| = {diff:.2e}")
    if diff > 1e-3:
        raise SystemExit("the transformers twin does not match StoryModel; refusing to compare")
    cfg = base.config
    long_prompt = torch.tensor([story_ids[: args.context]])
    decode_context = cfg.block_size - args.new_tokens
    prompt = torch.tensor([story_ids[:decode_context]])
    mean_positions = decode_context + args.new_tokens / 2
    for precision in args.precisions:
        model = _hf_precision(copy.deepcopy(twin), precision)
        kv_size = 2 if precision == "bf16" else 4
        nbytes = weight_bytes(model) + kv_bytes(cfg.n_layer, cfg.kv_width, mean_positions, kv_size)
        options = hf_options(args)
        with torch.inference_mode():

            def prefill(model=model):
                model(long_prompt, logits_to_keep=1)

            prefill_s = median_seconds(prefill, args.repeats)
            first_s = median_seconds(
                lambda model=model, options=options: hf_generate(model, long_prompt, 1, options),
                args.repeats,
            )
            tps = hf_decode_tps(model, prompt, args.new_tokens, options, args)
        rows.append(
            Row("transformers generate()", precision, tps, prefill_s * 1e3, first_s * 1e3, nbytes)
        )
        print(
            f"  transformers {precision}: prefill {prefill_s * 1e3:.0f} ms, first token "
            f"{first_s * 1e3:.0f} ms, decode {tps:.1f} tok/s [CPU pressure {cpu_pressure()}]",
            flush=True,
        )
        del model


def hf_options(args) -> dict:
    """``generate()`` arguments: greedy, with the cache the command line asked for."""
    options = {"do_sample": False, "pad_token_id": 0}
    if args.hf_cache == "static":
        options["cache_implementation"] = "static"
    return options


def hf_generate(model, ids: torch.Tensor, n: int, options: dict):
    return model.generate(ids, max_new_tokens=n, min_new_tokens=n, **options)


def hf_decode_tps(model, prompt: torch.Tensor, new_tokens: int, options: dict, args) -> float:
    """Decode tokens/s of ``generate()``: (n + 1 tokens) minus (1 token), so the prefill and
    the first token drop out."""
    one = median_seconds(lambda: hf_generate(model, prompt, 1, options), args.repeats)
    full = median_seconds(
        lambda: hf_generate(model, prompt, new_tokens + 1, options), args.hf_repeats, warmup=0
    )
    return new_tokens / max(full - one, 1e-9)


def head_to_head(base, story_ids, args, rounds: int = 4) -> None:
    """storytui and transformers decode at storytui's default precision (the same quantised
    layers in both), alternated round by round."""
    try:
        theirs = _hf_precision(llama_twin(base), DEFAULT_PRECISION)
    except ImportError:
        return  # bench_transformers has said so
    ours = prepare_model(copy.deepcopy(base), DEFAULT_PRECISION)
    prompt = _decode_prompt(base, story_ids, args)
    options = hf_options(args)
    alternate(
        f"head to head, {DEFAULT_PRECISION} decode",
        ("storytui", lambda: storytui_decode_tps(ours, prompt, args.new_tokens, torch.float32)),
        ("transformers", lambda: hf_decode_tps(theirs, prompt, args.new_tokens, options, args)),
        rounds,
    )


def int4_against_int8(base, tokenizer, story_ids, args, rounds: int = 4) -> None:
    """storytui with four-bit and with eight-bit weights, alternated round by round: decode
    speed, and the cold first token of a 1,000-token story (int4 encodes it with
    ``encoder_precision``: int8 too, or bf16 where AMX tiles run it)."""
    int4 = Generator(copy.deepcopy(base), tokenizer, precision="int4")
    int8 = Generator(copy.deepcopy(base), tokenizer, precision="int8")
    prompt = _decode_prompt(base, story_ids, args)
    alternate(
        "storytui decode, int4 against int8",
        ("int4", lambda: storytui_decode_tps(int4.model, prompt, args.new_tokens, torch.float32)),
        ("int8", lambda: storytui_decode_tps(int8.model, prompt, args.new_tokens, torch.float32)),
        rounds,
    )
    story = tokenizer.decode(story_ids[: args.context])
    alternate(
        "storytui cold first token (1,000 tokens), int4 against int8",
        ("int4", lambda: _cold_first_token_ms(int4, story)),
        ("int8", lambda: _cold_first_token_ms(int8, story)),
        rounds,
        unit="ms",
    )


def int4_encoders(base, tokenizer, story_ids, args, rounds: int = 4) -> None:
    """The cold first token of a 1,000-token story at int4, encoded in bf16 against int8,
    alternated round by round: what ``encoder_precision`` chooses between on this CPU."""
    generators = {}
    for encoder in ("bf16", "int8"):
        with mock.patch.object(precision_module, "encoder_precision", lambda e=encoder: e):
            generators[encoder] = Generator(copy.deepcopy(base), tokenizer, precision="int4")
    story = tokenizer.decode(story_ids[: args.context])
    alternate(
        f"storytui int4 cold first token (1,000 tokens), bf16 encoder against int8 encoder "
        f"(this CPU's choice: {precision_module.encoder_precision()})",
        ("bf16", lambda: _cold_first_token_ms(generators["bf16"], story)),
        ("int8", lambda: _cold_first_token_ms(generators["int8"], story)),
        rounds,
        unit="ms",
    )


def _cold_first_token_ms(generator: Generator, story: str) -> float:
    """Milliseconds to the first greedy token of ``story`` with nothing of it cached."""
    generator.forget_context()
    return _first_token_seconds(generator, story, GREEDY.with_changes(max_new_tokens=1)) * 1e3


def _decode_prompt(base, story_ids, args) -> torch.Tensor:
    return torch.tensor([story_ids[: base.config.block_size - args.new_tokens]])


def alternate(title: str, first, second, rounds: int, unit: str = "tok/s") -> None:
    """Two (name, measure) pairs taken back to back, round by round, and their ratio.

    A shared machine's speed drifts by tens of percent over minutes; measured alternately,
    each round's ratio compares the two under the same conditions.
    """
    (name_a, measure_a), (name_b, measure_b) = first, second
    pairs = []
    with torch.inference_mode():
        measure_a(), measure_b()  # warm-up
        for _ in range(rounds):
            pairs.append((quiet_sample(measure_a)[0], quiet_sample(measure_b)[0]))
    ratios = sorted(a / b for a, b in pairs)
    print(
        f"\n{title}, alternated over {rounds} rounds: {name_a} "
        + ", ".join(f"{a:.1f}" for a, _ in pairs)
        + f" {unit}; {name_b} "
        + ", ".join(f"{b:.1f}" for _, b in pairs)
        + f" {unit}; ratio median {statistics.median(ratios):.2f}× "
        f"(range {ratios[0]:.2f}–{ratios[-1]:.2f}×)"
    )


def _hf_precision(model, precision: str):
    if precision == "bf16":
        return model.to(torch.bfloat16)
    if precision == "int8":  # the same layers as storytui's, so the same kernels
        return prepare_model(model, precision)
    if precision == "int4":  # torch's int4 kernel: the ONNX decoder is storytui's own
        return quantize_torch_int4(model)
    return model


# ---------------------------------------------------------------------- report


def print_table(rows: list[Row], bandwidth: float) -> None:
    best_hf = max((r.decode_tps for r in rows if r.engine.startswith("transformers")), default=0)
    no_cache = {r.precision: r.decode_tps for r in rows if r.engine == "no-cache loop"}
    print()
    print(
        "| engine | precision | prefill ms (1,000 tokens) | first token ms | decode tok/s "
        "| × transformers (best) | × no-cache loop | share of bandwidth ceiling |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ceiling = bandwidth / r.bytes_per_token if r.bytes_per_token else 0
        cells = [
            r.engine,
            r.precision,
            _fmt(r.prefill_ms, "{:.0f}"),
            _fmt(r.first_token_ms, "{:.0f}"),
            f"{r.decode_tps:.1f}" if r.decode_tps >= 1 else f"{r.decode_tps:.2f}",
            _fmt(r.decode_tps / best_hf if best_hf else None, "{:.2f}×"),
            _fmt(
                r.decode_tps / no_cache[r.precision]
                if r.engine != "no-cache loop" and no_cache.get(r.precision)
                else None,
                "{:.0f}×",
            ),
            _fmt(
                r.decode_tps / ceiling if ceiling else None,
                "{:.0%}" + f" (ceiling {ceiling:.0f} tok/s)",
            ),
        ]
        print("| " + " | ".join(cells) + " |")
    for r in rows:
        for note in r.notes:
            print(f"- {r.engine} {r.precision}: {note}")


def _fmt(value, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


# ---------------------------------------------------------------------- loss gap


def scoring_windows(tokenizer, text_file: Path, max_tokens: int, block: int):
    """(ids, windows): the last ``max_tokens`` tokens of ``text_file`` (the book's end: least
    likely to sit in a training sample) cut into block-sized windows of inputs plus targets."""
    ids = tokenizer.encode(read_prose(text_file))[-max_tokens:]
    windows = [ids[i : i + block + 1] for i in range(0, len(ids) - 1, block)]
    return ids, [w for w in windows if len(w) > 1]


def decoded_logits(model, inputs: torch.Tensor) -> torch.Tensor:
    """Logits (1, T, vocab) of ``inputs`` fed one token at a time through the KV cache: the
    path every generated token takes (for int4, the ONNX Runtime decoder)."""
    cache = model.new_cache(1, dtype=torch.float32)
    steps = [model(inputs[:, t : t + 1], cache=cache)[0] for t in range(inputs.shape[1])]
    return torch.cat(steps, dim=1)


def encoded_then_decoded_logits(model, inputs: torch.Tensor) -> torch.Tensor:
    """Logits (1, T, vocab) as a continuation sees them: the first half of ``inputs`` encoded
    in one call (the story), the rest decoded one token at a time after it."""
    cache = model.new_cache(1, dtype=torch.float32)
    half = inputs.shape[1] // 2
    encoded = model(inputs[:, :half], cache=cache)[0].float()
    steps = [model(inputs[:, t : t + 1], cache=cache)[0] for t in range(half, inputs.shape[1])]
    return torch.cat([encoded, *steps], dim=1)


def loss_gap_variants(model) -> list[tuple[str, Callable[[], object], Callable | None]]:
    """(label, build the model, logits of a window or None for a plain forward pass): every
    precision, and int4 both decoded throughout and encoded by each encoder it can use."""
    variants: list[tuple[str, Callable[[], object], Callable | None]] = [
        (precision, lambda p=precision: prepare_model(copy.deepcopy(model), p), None)
        for precision in PRECISIONS
        if precision != "int4"
    ]
    int4 = prepare_model(copy.deepcopy(model), "int4")
    if not isinstance(int4, Int4Model):
        return [*variants, ("int4 (int8: no int4 graph for this model)", lambda: None, None)]
    variants.append(("int4, decoded at every position", lambda: int4, decoded_logits))
    for encoder in ("int8", "bf16"):
        variants.append(
            (
                f"int4, first half encoded in {encoder}",
                lambda e=encoder: Int4Model(model, encoder=e),
                encoded_then_decoded_logits,
            )
        )
    return variants


def loss_gap(checkpoint_dir: Path, text_file: Path, max_tokens: int) -> None:
    """Per-token loss and bits per byte of each precision over the tail of ``text_file``."""
    from storytui.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(checkpoint_dir)
    tokenizer = checkpoint.tokenizer
    block = checkpoint.model.config.block_size
    ids, windows = scoring_windows(tokenizer, text_file, max_tokens, block)
    n_bytes = len(tokenizer.decode(ids[1:]).encode("utf-8"))
    n_targets = sum(len(w) - 1 for w in windows)
    print(
        f"checkpoint {checkpoint_dir} on {text_file.name}: {n_targets:,} tokens, {n_bytes:,} bytes"
    )
    print()
    print(
        "| precision | loss (nats/token) | bits per byte | gap vs fp32 (nats) | top-1 agrees with fp32 |"
    )
    print("|---|---:|---:|---:|---:|")
    reference_top: list[torch.Tensor] = []
    reference_loss = None
    for label, build, window_logits in loss_gap_variants(checkpoint.model.float().eval()):
        model = build()
        if model is None:
            print(f"| {label} | | | | |")
            continue
        total, agree, tops = 0.0, 0, []
        with torch.inference_mode():
            for window in windows:
                x = torch.tensor([window[:-1]])
                y = torch.tensor([window[1:]])
                if window_logits is not None:
                    logits = window_logits(model, x)
                    loss = torch.nn.functional.cross_entropy(logits[0].float(), y[0])
                else:
                    logits, loss = model(x, y)
                total += loss.item() * y.numel()
                tops.append(logits[0].float().argmax(-1))
        if not reference_top:
            reference_top = tops
        agree = sum(int((a == b).sum()) for a, b in zip(tops, reference_top, strict=True))
        nats = total / n_targets
        bpb = total / math.log(2) / n_bytes
        gap = 0.0 if reference_loss is None else nats - reference_loss
        reference_loss = nats if reference_loss is None else reference_loss
        print(f"| {label} | {nats:.4f} | {bpb:.4f} | {gap:+.4f} | {agree / n_targets:.2%} |")


def read_prose(path: Path) -> str:
    """The file's text; a Project Gutenberg book loses its licence and front matter first."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if "*** START OF" in text:
        from trainer.sources.gutenberg import clean_gutenberg

        text = clean_gutenberg(text)
    return text


# ---------------------------------------------------------------------- main


def story_token_ids(tokenizer, count: int) -> list[int]:
    """``count`` tokens of real prose when the Gutenberg data is present, else random tokens."""
    if STORY_SOURCE.exists():
        ids = tokenizer.encode(read_prose(STORY_SOURCE)[50_000:150_000])
        if len(ids) >= count:
            return ids[:count]
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, tokenizer.eot, (count,), generator=generator).tolist()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, default=1000, help="prefill / first-token context")
    parser.add_argument("--new-tokens", type=int, default=200, help="tokens decoded per timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings per figure (median)")
    parser.add_argument("--hf-repeats", type=int, default=2, help="timed transformers decodes")
    parser.add_argument("--hf-cache", default="dynamic", choices=["dynamic", "static"])
    parser.add_argument("--no-cache-steps", type=int, default=3)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--no-transformers", action="store_true")
    parser.add_argument("--loss-gap", type=Path, metavar="CHECKPOINT_DIR")
    parser.add_argument("--text", type=Path, default=STORY_SOURCE, help="text for --loss-gap")
    parser.add_argument("--loss-tokens", type=int, default=20_000)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")  # deprecation chatter from the quantisation API
    torch.manual_seed(0)
    for line in machine_report():
        print(line)
    # what every Generator does; set before anything runs, so transformers gets it too
    kept = keep_freed_memory()
    print(f"freed memory kept in the process (glibc thresholds raised): {'yes' if kept else 'no'}")
    if args.loss_gap:
        loss_gap(args.loss_gap, args.text, args.loss_tokens)
        return
    started = time.perf_counter()
    bandwidth = read_bandwidth()
    print(
        f"memory read bandwidth (sum of a 512 MiB tensor, best of 15): {bandwidth / 1e9:.1f} GB/s"
    )
    tokenizer = load_tokenizer()
    base = StoryModel(PRESETS["colab"].config(tokenizer.n_vocab)).eval()
    print(f"model: colab preset, {base.num_parameters():,} parameters, random weights")
    story_ids = story_token_ids(tokenizer, 2 * base.config.block_size + 100)
    rows: list[Row] = []
    bench_storytui(base, tokenizer, story_ids, args, rows)
    if not args.no_transformers:
        bench_transformers(base, story_ids, args, rows)
    print_table(rows, bandwidth)
    if not args.no_transformers and DEFAULT_PRECISION in args.precisions:
        head_to_head(base, story_ids, args)
    if {"int4", "int8"} <= set(args.precisions):
        int4_against_int8(base, tokenizer, story_ids, args)
    if "int4" in args.precisions:
        int4_encoders(base, tokenizer, story_ids, args)
    long_story_first_tokens(base, tokenizer, story_ids)
    print(
        f"\nbenchmark took {time.perf_counter() - started:.0f} s; {machine_report()[-1]}; "
        f"{_common.disturbed_samples} samples stayed disturbed by other processes after retries"
    )


if __name__ == "__main__":
    with scratch_home():  # its int4 graphs stay out of the writer's cache
        main()
