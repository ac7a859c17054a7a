"""Streaming generation: reproducible, cancellable, stops on stop strings, handles long stories."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from storytui.errors import StoryError
from storytui.generation import Generator, _split_at_stop
from storytui.model import PRESETS, StoryModel
from storytui.sampling import SamplingSettings
from storytui.story_format import StoryTemplate, format_story
from storytui.tokenizer import UTF8_INVALID, load_tokenizer

STORY = "The ship creaked in the dark water. Ishmael looked up at the mast and"


@pytest.fixture(scope="module")
def generator() -> Generator:
    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    model = StoryModel(PRESETS["tiny"].config(tokenizer.n_vocab))
    return Generator(model, tokenizer)


def settings(**changes) -> SamplingSettings:
    values = {"seed": 7, "max_new_tokens": 40, **changes}
    return SamplingSettings(**values)


def test_same_seed_same_text_other_seed_other_text(generator: Generator) -> None:
    first = generator.generate(STORY, settings())
    assert first == generator.generate(STORY, settings())
    assert first != generator.generate(STORY, settings(seed=8))
    assert len(first) > 0


def test_stream_yields_many_deltas_in_order(generator: Generator) -> None:
    deltas = list(generator.stream(STORY, settings()))
    assert len(deltas) > 10
    assert "".join(deltas) == generator.generate(STORY, settings())
    assert generator.last_stats.new_tokens == 40
    assert generator.last_stats.stopped_by == "max_tokens"


def test_greedy_matches_manual_argmax_loop(generator: Generator) -> None:
    tok = generator.tokenizer
    ids = tok.encode(STORY)
    expected = []
    with torch.inference_mode():
        for _ in range(15):
            logits, _ = generator.model(torch.tensor([ids]))
            nxt = int(logits[0, -1].argmax())
            expected.append(nxt)
            ids.append(nxt)
    greedy = SamplingSettings(temperature=0, repetition_penalty=1.0, max_new_tokens=15)
    tokens = [e.token for e in generator.stream_events(STORY, greedy) if e.token >= 0]
    assert tokens == expected


def test_events_report_probability_and_alternatives(generator: Generator) -> None:
    events = [
        e for e in generator.stream_events(STORY, settings(top_alternatives=3)) if e.token >= 0
    ]
    for event in events:
        assert 0.0 < event.prob <= 1.0
        assert len(event.alternatives) == 3
        probs = [a.prob for a in event.alternatives]
        assert probs == sorted(probs, reverse=True)
        assert event.prob <= probs[0] + 1e-6


def test_cancel_stops_between_tokens(generator: Generator) -> None:
    cancel = threading.Event()
    stream = generator.stream_events(STORY, settings(max_new_tokens=200), cancel=cancel)
    for seen, _ in enumerate(stream, start=1):
        if seen == 5:
            cancel.set()
    assert generator.last_stats.new_tokens == 5
    assert generator.last_stats.stopped_by == "cancelled"


def test_stop_string_cuts_output(generator: Generator) -> None:
    full = generator.generate(STORY, settings(max_new_tokens=60))
    stop = full[10:14]
    cut = generator.generate(STORY, settings(max_new_tokens=60, stop=(stop,)))
    assert cut == full[: full.index(stop)]
    assert generator.last_stats.stopped_by == "stop_string"


def test_split_at_stop_holds_back_possible_prefix() -> None:
    assert _split_at_stop("hello ##", ("###",)) == ("hello ", False)
    assert _split_at_stop("hello ###x", ("###",)) == ("hello ", True)
    assert _split_at_stop("hello", ()) == ("hello", False)


def test_context_longer_than_block_keeps_head_and_newest_tail(generator: Generator) -> None:
    block = generator.block_size
    long_story = " ".join(f"word{i}" for i in range(2000))
    text = generator.generate(long_story, settings(max_new_tokens=3 * block), prompt="A whale")
    assert generator.last_stats.new_tokens == 3 * block
    assert generator.last_stats.context_tokens <= block
    assert len(text) > 0
    head, tail = generator.context_ids(long_story, prompt="A whale")
    context = generator.fit_context(head, tail, 50)
    assert context.head == head
    assert context.tail == tail[-len(context.tail) :]
    room = min(50, block // 4)
    seen = len(context.head) + len(context.tail)
    assert block - room - block // 16 < seen <= block - room


@pytest.mark.parametrize("long", ["prompt", "memory", "both"])
def test_a_prompt_and_memory_too_long_for_the_header_lose_their_ends_not_the_layout(
    generator: Generator, long: str
) -> None:
    """The header keeps every template line, ``[Story]`` last, within ``header_limit``: the
    longer text is cut at its end, the shorter one kept whole where that is enough."""
    tok, limit = generator.tokenizer, generator.header_limit
    premise = " ".join(f"dragon{i} and the knight" for i in range(limit))
    note = " ".join(f"Ada{i} is brave" for i in range(limit))
    prompt = premise if long in ("prompt", "both") else "A storm"
    memory = note if long in ("memory", "both") else "Names: Ada"
    head, _ = generator.context_ids("Once.", prompt=prompt, memory=memory)
    header = tok.decode(head)
    assert len(head) <= limit
    lines = header.split("\n")
    assert lines[0].startswith("[Prompt] ") and lines[1].startswith("[Memory] ")
    assert lines[2:] == ["[Story]", ""]
    fitted_prompt, fitted_memory = lines[0][9:], lines[1][9:]
    assert prompt.startswith(fitted_prompt) and memory.startswith(fitted_memory)
    if long == "prompt":
        assert fitted_memory == memory and len(fitted_prompt) < len(prompt)
    if long == "memory":
        assert fitted_prompt == prompt and len(fitted_memory) < len(memory)
    if long == "both":  # each keeps about half of the room
        assert len(fitted_prompt) < len(prompt) and len(fitted_memory) < len(memory)
        halves = len(tok.encode(fitted_prompt)), len(tok.encode(fitted_memory))
        assert min(halves) > 0.3 * limit and abs(halves[0] - halves[1]) <= 0.1 * limit
    assert generator.fit_conditioning(prompt, memory) == (fitted_prompt, fitted_memory)
    short = generator.fit_conditioning(" A storm ", "Names: Ada")
    assert short == ("A storm", "Names: Ada")


def test_a_long_story_keeps_its_window_while_words_are_added_at_the_end() -> None:
    """The window over a story longer than the block starts at a multiple of block // 16
    tokens: adding a word moves it only when a whole step has been written, so continuing
    after a few more words encodes only those words."""
    gen = _tiny_generator()
    block, sampled = gen.block_size, settings(max_new_tokens=16)
    step = block // 16

    def window(text: str) -> list[int]:
        context = gen.fit_context(*gen.context_ids(text), sampled.max_new_tokens)
        return context.tail

    words = [f"w{i}" for i in range(400)]
    moves = 0
    for n in range(300, 340):
        before, after = window(" ".join(words[:n])), window(" ".join(words[: n + 1]))
        if after[: len(before)] != before:
            moves += 1
    assert 0 < moves < 40 // 2  # a step is several words, not one
    # find a story whose next word does not move the window: only that word is encoded
    for n in range(300, 340):
        story, longer = " ".join(words[:n]), " ".join(words[: n + 1])
        if window(longer)[: len(window(story))] == window(story):
            break
    gen.prefill(story, sampled)
    assert 0 < gen.prefill(longer, sampled) <= step


def test_prompt_and_memory_use_story_format(generator: Generator) -> None:
    head, story = generator.context_ids("Once.", prompt="A storm", memory="Names: Ada")
    formatted = format_story("Once.", prompt="A storm", memory="Names: Ada")
    tok = generator.tokenizer
    assert tok.decode(head) == formatted.header
    assert tok.decode(story) == "Once."
    assert generator.context_ids("Once.") == ([], tok.encode("Once."))


def test_template_stop_strings_apply(generator: Generator) -> None:
    full = generator.generate(STORY, settings(max_new_tokens=60))
    stop = full[5:8]
    templated = Generator(generator.model, generator.tokenizer, StoryTemplate(stop_strings=(stop,)))
    assert templated.generate(STORY, settings(max_new_tokens=60)) == full[: full.index(stop)]


def test_empty_story_still_generates(generator: Generator) -> None:
    assert len(generator.generate("", settings(max_new_tokens=10))) > 0


@pytest.mark.parametrize("precision", ["bf16", "int8", "int4"])
def test_reduced_precisions_generate(precision: str) -> None:
    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    model = StoryModel(PRESETS["tiny"].config(tokenizer.n_vocab))
    generator = Generator(model, tokenizer, precision=precision)
    assert generator.generate(STORY, settings()) == generator.generate(STORY, settings())


def test_cached_prefix_is_reused_and_gives_the_same_text_as_a_cold_start() -> None:
    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    warm = Generator(StoryModel(PRESETS["tiny"].config(tokenizer.n_vocab)), tokenizer)
    greedy = SamplingSettings(temperature=0, repetition_penalty=1.0, max_new_tokens=20)
    first = warm.generate(STORY, greedy)
    again = warm.generate(STORY, greedy)
    assert again == first
    assert warm.last_stats.reused_tokens == warm.last_stats.context_tokens
    extended = STORY + first
    warm_text = warm.generate(extended, greedy)
    assert 0 < warm.last_stats.reused_tokens < warm.last_stats.context_tokens
    warm.forget_context()
    cold_text = warm.generate(extended, greedy)
    assert warm.last_stats.reused_tokens == 0
    assert warm_text == cold_text


def _tiny_generator() -> Generator:
    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    return Generator(StoryModel(PRESETS["tiny"].config(tokenizer.n_vocab)), tokenizer)


def test_prefill_ahead_makes_the_whole_context_cached_and_changes_nothing() -> None:
    """What the app does while the writer types: encode ahead, then continue from the cache."""
    ahead = _tiny_generator()
    sampled = settings(seed=3, max_new_tokens=25)
    head, story = ahead.context_ids(STORY, "A ship", "Ishmael")
    encoded = ahead.prefill(STORY, sampled, prompt="A ship", memory="Ishmael")
    assert encoded == len(head) + len(story)
    assert ahead.prefill(STORY, sampled, prompt="A ship", memory="Ishmael") == 0
    text = ahead.generate(STORY, sampled, prompt="A ship", memory="Ishmael")
    stats = ahead.last_stats
    assert stats.reused_tokens == stats.context_tokens == encoded
    # typing on: only the new words are encoded
    longer = STORY + " the whale"
    assert 0 < ahead.prefill(longer, sampled, prompt="A ship", memory="Ishmael") < 6
    cold = _tiny_generator()
    assert text == cold.generate(STORY, sampled, prompt="A ship", memory="Ishmael")
    assert cold.last_stats.reused_tokens == 0


def test_a_prefill_in_another_thread_waits_for_the_running_generation() -> None:
    """The cache serves one caller at a time: a prefill started mid-stream runs after it."""
    gen = _tiny_generator()
    sampled = settings(seed=5, max_new_tokens=30)
    expected = _tiny_generator().generate(STORY, sampled)
    events = gen.stream_events(STORY, sampled)
    first = next(events)  # the stream holds the model now
    done = threading.Event()
    worker = threading.Thread(target=lambda: (gen.prefill("Other words", sampled), done.set()))
    worker.start()
    assert not done.wait(0.3)
    rest = list(events)
    worker.join(timeout=30)
    assert done.is_set()
    text = first.text + "".join(e.text for e in rest)
    assert text == expected


class _CancelAfter(threading.Event):
    """A cancel flag that reads as set from its ``checks``-th look on."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.checks = checks

    def is_set(self) -> bool:
        self.checks -= 1
        return self.checks < 0


def test_a_cancelled_prefill_keeps_what_it_encoded_for_the_next_call(monkeypatch) -> None:
    monkeypatch.setattr("storytui.generation.PREFILL_CHUNK", 16)
    gen = _tiny_generator()
    sampled = settings(seed=9, max_new_tokens=10)
    story = STORY + " The whale was white, and the sea was grey and wide and cold all night."
    assert len(gen.tokenizer.encode(story)) > 32
    # looks: before starting, before chunk 1, before chunk 2 (cancelled there)
    assert gen.prefill(story, sampled, cancel=_CancelAfter(2)) == 16
    text = gen.generate(story, sampled)
    assert gen.last_stats.reused_tokens == 16
    assert text == _tiny_generator().generate(story, sampled)
    assert gen.prefill(story, sampled, cancel=_CancelAfter(0)) == 0  # set before it starts


def test_a_second_call_from_the_thread_holding_the_model_is_refused() -> None:
    """Waiting for itself would hang forever; a paused stream must be finished or closed."""
    gen = _tiny_generator()
    events = gen.stream_events(STORY, settings())
    next(events)
    with pytest.raises(StoryError, match="still streaming"):
        gen.prefill(STORY, settings())
    events.close()
    assert gen.prefill(STORY + " more", settings()) > 0


def test_the_first_token_wait_includes_waiting_for_the_model() -> None:
    gen = _tiny_generator()
    running = gen.stream_events(STORY, settings(max_new_tokens=5))
    next(running)
    waiter = threading.Thread(target=lambda: gen.generate("Other words", settings()))
    waiter.start()
    time.sleep(0.3)
    list(running)
    waiter.join(timeout=30)
    assert gen.last_stats.first_token_seconds >= 0.3


# ---------------------------------------------------------------------------- valid UTF-8


# Bytes that break UTF-8 wherever they do not fit: one never valid (FF), lone continuation
# bytes, lead bytes; and how far the model below prefers them.
BROKEN_FAVOURITES = {0xFF: 9.0, 0x80: 8.0, 0xF0: 7.0, 0xBF: 6.0, 0xE2: 5.0, 0xC3: 5.0}


class PrefersBrokenBytes(StoryModel):
    """The tiny model with its scores pushed far toward ``BROKEN_FAVOURITES``."""

    def __init__(self, config, tokenizer) -> None:
        super().__init__(config)
        self.bias = torch.zeros(config.vocab_size)
        for byte, score in BROKEN_FAVOURITES.items():
            self.bias[tokenizer.encoding.encode_single_token(bytes([byte]))] = score

    def forward(self, idx, targets=None, cache=None, last_only=False):
        logits, loss = super().forward(idx, targets, cache=cache, last_only=last_only)
        return logits + self.bias, loss


def _broken_bytes_generator() -> Generator:
    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    return Generator(
        PrefersBrokenBytes(PRESETS["tiny"].config(tokenizer.n_vocab), tokenizer), tokenizer
    )


def generated_bytes(gen: Generator, events: list) -> bytes:
    return b"".join(gen.tokenizer.token_bytes(e.token) for e in events if e.token >= 0)


GREEDY = SamplingSettings(temperature=0, repetition_penalty=1.0, max_new_tokens=60)
SAMPLED = settings(temperature=1.0, top_p=1.0, min_p=0.0, max_new_tokens=60)


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_a_model_that_prefers_broken_bytes_still_writes_valid_utf8(sampling) -> None:
    gen = _broken_bytes_generator()
    broken = gen.generate(STORY, sampling.with_changes(valid_utf8=False))
    assert broken.count("\ufffd") > 20  # what the model does unguarded
    events = list(gen.stream_events(STORY, sampling))
    text = "".join(e.text for e in events)
    assert "\ufffd" not in text
    assert generated_bytes(gen, events).decode("utf-8") == text  # strict: every byte valid
    assert gen.last_stats.new_tokens == 60
    assert any(ord(c) > 0xFFFF for c in text)  # it did write its 4-byte characters


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7])
def test_the_token_limit_never_cuts_a_character(count: int) -> None:
    """The model starts a 4-byte character whenever it can: the last tokens must finish it."""
    gen = _broken_bytes_generator()
    for sampling in (GREEDY, SAMPLED):
        events = list(gen.stream_events(STORY, sampling.with_changes(max_new_tokens=count)))
        assert gen.last_stats.new_tokens == count
        text = "".join(e.text for e in events)
        assert "\ufffd" not in text
        assert generated_bytes(gen, events).decode("utf-8") == text


def test_a_prompt_ending_mid_character_is_continued_with_the_rest_of_it(monkeypatch) -> None:
    gen = _tiny_generator()
    tok = gen.tokenizer
    cut = tok.encode("A whale 🐳")[:-1]  # 🐳's bytes are separate tokens: one byte still owed
    prompt = b"".join(tok.token_bytes(t) for t in cut)
    monkeypatch.setattr(gen, "context_ids", lambda *args: ([], cut))
    events = list(gen.stream_events("", GREEDY.with_changes(max_new_tokens=20)))
    generated = generated_bytes(gen, events)
    text = (prompt + generated).decode("utf-8")  # strict: the character was finished
    assert text.startswith("A whale ")
    assert text[8].encode()[:3] == "🐳".encode()[:3]


def test_a_seeded_guarded_run_repeats_byte_for_byte() -> None:
    gen = _broken_bytes_generator()
    first = [e.token for e in gen.stream_events(STORY, SAMPLED)]
    assert first == [e.token for e in _broken_bytes_generator().stream_events(STORY, SAMPLED)]
    assert first != [e.token for e in gen.stream_events(STORY, SAMPLED.with_changes(seed=8))]


def test_reported_alternatives_are_valid_and_probabilities_are_over_valid_tokens() -> None:
    """The app offers the alternatives as replacements: each must fit where it stands. Mid-
    character fewer tokens fit than are asked for; then the list is every valid token and its
    probabilities sum to 1 (the distribution the token was drawn from)."""
    gen = _broken_bytes_generator()
    tok, sampling = gen.tokenizer, SAMPLED.with_changes(top_alternatives=100)
    table = tok.utf8_table()
    state, fitting_all = tok.utf8_state(tok.encode(STORY)), 0
    events = [e for e in gen.stream_events(STORY, sampling) if e.token >= 0]
    for step, event in enumerate(events):
        allowed = ~table.forbidden[state, table.budget(state, sampling.max_new_tokens - step)]
        tokens = [a.token for a in event.alternatives]
        assert allowed[event.token] and allowed[tokens].all()
        assert all(a.prob > 0 for a in event.alternatives)
        if allowed.sum() <= 100:
            fitting_all += 1
            assert set(tokens) == set(allowed.nonzero()[0].tolist())
            assert sum(a.prob for a in event.alternatives) == pytest.approx(1.0, abs=1e-5)
        state = int(table.next_state[state, event.token])
        assert state != UTF8_INVALID
    assert fitting_all > 10


# ---------------------------------------------------------------------------- healing


ENDINGS = [" ", "\n", "\n\n", "\n\n\n", " \n"]


@pytest.mark.parametrize("ending", ENDINGS, ids=repr)
def test_trailing_whitespace_is_taken_back_and_spelled_out_by_the_model(ending: str) -> None:
    """A story ending in " " or a blank line ends in a token the model hardly saw there: it
    is taken back, the model writes it itself, and only what follows is shown."""
    gen = _tiny_generator()
    tok = gen.tokenizer
    story = "The captain looked at the sea." + ending
    _, ids = gen.context_ids(story)
    healed, owed = gen.heal(ids)
    assert owed == ending.encode()[-2:] and tok.decode(healed) + owed.decode() == story
    events = [e for e in gen.stream_events(story, settings(top_alternatives=20)) if e.token >= 0]
    assert gen._prefix.ids == healed  # what the model was conditioned on
    written = b"".join(tok.token_bytes(e.token) for e in events)
    assert written.startswith(owed)
    assert "".join(e.text for e in events) == written[len(owed) :].decode("utf-8")
    first = next(e for e in events if e.alternatives)
    for alternative in first.alternatives:  # shown as it would continue the story
        piece = tok.token_bytes(alternative.token)
        if len(piece) > len(owed) and piece.startswith(owed):
            assert alternative.text == piece[len(owed) :].decode("utf-8", errors="replace")


@pytest.mark.parametrize(
    ("ending", "written_instead"),
    [("\t", " "), ("  \t", " "), ("\n\t", "\n\n"), ("\n\t  \n", "\n\n"), ("\x0c", " ")],
    ids=repr,
)
def test_whitespace_the_model_never_saw_is_taken_back_whole(
    ending: str, written_instead: str
) -> None:
    """A tab or a form feed at the end is not spelled out (the model writes fragments after
    it): the model writes a space or a blank line in its place, and the continuation shown
    after the story's own tab is the one it writes after that space or blank line."""
    gen = _tiny_generator()
    base = "The captain looked at the sea."
    _, ids = gen.context_ids(base + ending)
    healed, owed = gen.heal(ids)
    assert gen.tokenizer.decode(healed) == base and owed == written_instead.encode()
    sampled = settings(seed=5, max_new_tokens=12)
    shown = [(e.token, e.text) for e in gen.stream_events(base + ending, sampled)]
    assert "".join(text for _, text in shown)
    assert shown == [(e.token, e.text) for e in gen.stream_events(base + written_instead, sampled)]


def test_a_story_of_whitespace_alone_starts_like_an_empty_one() -> None:
    gen = _tiny_generator()
    _, ids = gen.context_ids("   \n\n\t  \n")
    assert gen.heal(ids) == ([], b"")
    sampled = settings(seed=3, max_new_tokens=12)
    shown = [(e.token, e.text) for e in gen.stream_events("   \n\n\t  \n", sampled)]
    assert shown == [(e.token, e.text) for e in gen.stream_events("", sampled)]


def test_healing_leaves_other_endings_and_seed_models_alone() -> None:
    gen = _tiny_generator()
    for story in ("The captain looked at the sea.", 'He said, "', "a\u00a0"):  # NBSP: a letter
        _, ids = gen.context_ids(story)
        assert gen.heal(ids) == (ids, b"")
    _, ids = gen.context_ids("The sea. ")
    gen.original_tokens = True  # what an imported seed model sets: its original's tokens
    assert gen.heal(ids) == (ids, b"")


def test_a_healed_story_is_encoded_ahead_and_reproducible() -> None:
    gen = _tiny_generator()
    story, sampled = STORY + ".\n\n", settings(seed=11, max_new_tokens=12)
    encoded = gen.prefill(story, sampled)
    first = [e.token for e in gen.stream_events(story, sampled)]
    assert gen.last_stats.reused_tokens == encoded == len(gen.heal(gen.context_ids(story)[1])[0])
    assert [e.token for e in _tiny_generator().stream_events(story, sampled)] == first


def test_cancelling_mid_character_drops_its_first_bytes() -> None:
    """Esc between the bytes of an emoji: the half character is left out, not shown as U+FFFD."""
    import threading

    gen = _broken_bytes_generator()  # starts a 4-byte character whenever it can
    cancel = threading.Event()
    text, cut_mid_character = "", False
    for event in gen.stream_events(STORY, GREEDY.with_changes(max_new_tokens=40), cancel=cancel):
        text += event.text
        if event.token >= 0 and not event.text and not cancel.is_set():
            cancel.set()  # a token that made nothing visible: a character is under way
            cut_mid_character = True
    assert cut_mid_character and gen.last_stats.stopped_by == "cancelled"
    assert "\ufffd" not in text


def test_a_long_run_of_whitespace_is_healed_only_at_its_end() -> None:
    """Each byte taken back costs the continuation a token: a run of 40 line breaks keeps 38
    in the story (re-encoded) and the model writes the last two."""
    gen = _tiny_generator()
    tok = gen.tokenizer
    _, ids = gen.context_ids("a" + "\n" * 40)
    healed, owed = gen.heal(ids)
    assert owed == b"\n\n" and tok.decode(healed) == "a" + "\n" * 38
    events = list(gen.stream_events("a" + "\n" * 40, settings(max_new_tokens=8)))
    assert sum(e.token >= 0 for e in events) == 8
