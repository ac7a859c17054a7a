"""WritingPrompts: human prompt/story pairs from the Fan et al. (2018) release and its extracts.

Finetuning teaches the model to follow a writer's prompt, so this module gathers human-written
pairs from every layout the data circulates in, and takes care that machine-written text never
gets in: detection benchmarks put human and model stories side by side in the same files, and
only the rows or fields their authors mark as human are read (see ``_read_*`` below).

Everything is cleaned to the same plain text as the books (``trainer.sources`` conventions):
the ``<newline>`` tokens become line breaks, the tokenised spacing (``do n't``, `` `` ``, ``,``)
is undone, prompt tags such as ``[ WP ]`` go, deleted stories are dropped, and a story seen
twice (in any source, even truncated or lower-cased) is kept once. Official splits are kept;
stories without one get a split from a hash of their text, so the same story always lands in
the same split. Output: ``clean/writingprompts/{train,valid,test}.jsonl``.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import errno
import hashlib
import html
import json
import os
import re
import tarfile
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from storytui import paths
from storytui.atomic import atomic_write_text, ordinary_mode
from storytui.errors import StoryError
from storytui.textfile import looks_binary
from trainer.sources import BINARY_REASON, normalize_punctuation
from trainer.sources.http import bad_download, check_url, download

DEFAULT_URL = "https://dl.fbaipublicfiles.com/fairseq/data/writingPrompts.tar.gz"
ARCHIVE_NAME = "writingPrompts.tar.gz"
SPLITS = ("train", "valid", "test")
REPORT = "report.json"
MIN_WORDS = 10
SCENE_BREAK = "* * *"
_KEY_CHARS = 100
_CHUNK = 1 << 20

csv.field_size_limit(2**31 - 1)


@dataclass(frozen=True)
class Pair:
    """One human story and the prompt it answers (``""`` when the source has none)."""

    prompt: str
    story: str
    split: str
    source: str


@dataclass
class IngestReport:
    """Counts for the CLI: kept pairs per source and split, and what was left out and why."""

    kept: Counter = field(default_factory=Counter)  # (source, split) -> pairs
    duplicates: Counter = field(default_factory=Counter)  # source -> stories seen before
    dropped: Counter = field(default_factory=Counter)  # source -> empty/deleted/too short
    machine: Counter = field(default_factory=Counter)  # source -> machine-written rows ignored
    unclear: Counter = field(default_factory=Counter)  # source -> rows whose label is a number
    skipped_files: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # what was read, as absolute paths
    replaced: dict | None = None  # the earlier ingest's report, when this one replaced it

    def split_totals(self) -> dict[str, int]:
        return {split: sum(n for (_, s), n in self.kept.items() if s == split) for split in SPLITS}

    def to_json(self) -> dict:
        return {
            "kept": [[src, split, n] for (src, split), n in sorted(self.kept.items())],
            "duplicates": dict(self.duplicates),
            "dropped": dict(self.dropped),
            "machine_rows_ignored": dict(self.machine),
            "unclear_label_rows": dict(self.unclear),
            "skipped_files": self.skipped_files,
            "sources": self.sources,
        }


# --- cleaning ------------------------------------------------------------------------------

_NEWLINE_TOKENS = re.compile(r"<\\?newline>|<br\s*/?>", re.IGNORECASE)
_TAG = r"[\[(]\s*[A-Za-z]{1,3}\s*[\])]"
_LEADING_TAGS = re.compile(rf"^\s*(?:{_TAG}\s*)+")
_KNOWN_TAGS = re.compile(
    r"[\[(]\s*(?:WP|EU|IP|CW|OT|TT|MP|FF|PI|RF|PM|SP|MF|CC|RE|WT|PROMPT)\s*[\])]\s*", re.IGNORECASE
)
_DELETED = {"[deleted]", "[removed]", "deleted", "removed", "[ deleted ]", "[ removed ]"}
_MD_LINK = re.compile(r"\[\s*([^\]\n]+?)\s*\]\s*\(\s*(?:https?\s*:\s*//|www\.)[^)\s]*[^)]*\)")
_SCENE_BREAK_LINE = re.compile(r"^(?=.*[*\-=_~])[\s*\-=_~—]{3,}$")
_RUN_ON_RULE = re.compile(r"\s*(?:-\s*){3,}(?=\s|$)|\s*(?:—\s*){2,}")
_EMPHASIS = re.compile(r"(?<![\w*])\*{1,3}\s*([^*\n]+?)\s*\*{1,3}(?![\w*])")
_CONTRACTIONS = [
    (re.compile(r"\b(\w+) n['’]\s?t\b", re.IGNORECASE), r"\1n't"),  # do n't, Ca n' t
    (re.compile(r"(\w)\s?['’] (s|ll|re|ve|d|m|t)\b", re.IGNORECASE), r"\1'\2"),  # it' s
    (re.compile(r"(\w) ['’](s|ll|re|ve|d|m)\b", re.IGNORECASE), r"\1'\2"),  # it 's
    (re.compile(r"\b(gon|wan|got) (na|ta)\b", re.IGNORECASE), r"\1\2"),
]
_SPACE_BEFORE = re.compile(r"[ \t]+([.,!?;:%)\]}])")
_SPACE_AFTER = re.compile(r"([(\[{$#])[ \t]+(?=\S)")
_SPACED_HYPHEN = re.compile(r"(?<=\w) - (?=\w)")
_URL_SPACES = re.compile(r"\b(https?)\s*:\s*//\s*", re.IGNORECASE)
_SPACED_ENTITY = re.compile(r"&\s*(nbsp|amp|gt|lt|quot|apos|#x?[0-9a-fA-F]+)\s*;")
_PTB_OPEN = re.compile(r"\s*``\s*")
_PTB_CLOSE = re.compile(r"\s*(?<!')''(?!')")


def clean_prompt(text: str) -> str:
    """One line of plain prompt text, without reddit tags such as ``[ WP ]``."""
    text = _NEWLINE_TOKENS.sub(" ", text)
    text = _LEADING_TAGS.sub("", text)
    text = _KNOWN_TAGS.sub("", text)
    text = detokenize(" ".join(text.split()))
    return text.strip()


def clean_story(text: str) -> str:
    """Plain story text: one paragraph per line, a blank line between, no tokeniser artefacts."""
    text = _NEWLINE_TOKENS.sub("\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _repair_replacement_chars(text)
    paragraphs: list[str] = []
    for raw in text.split("\n"):
        line = " ".join(raw.split())
        if _SCENE_BREAK_LINE.match(line):
            if paragraphs and paragraphs[-1] != SCENE_BREAK:
                paragraphs.append(SCENE_BREAK)
        elif line:
            paragraphs.append(detokenize(line))
    while paragraphs and paragraphs[-1] == SCENE_BREAK:
        paragraphs.pop()
    # One paragraph per line with a blank line between, as in the cleaned books.
    return "\n\n".join(p for p in paragraphs if p)


def detokenize(line: str) -> str:
    """Undo Fan et al. / PTB tokenisation on one line; harmless on text that is already plain."""
    if "&" in line and ";" in line:
        line = html.unescape(_SPACED_ENTITY.sub(r"&\1;", line)).replace("\u200b", "")
    line = _URL_SPACES.sub(r"\1://", line)
    line = _MD_LINK.sub(r"\1", line)
    line = line.replace("'''", "'\"")  # a single quote closing inside a double one
    line = _PTB_OPEN.sub(' "', line)  # `` opens a quote, '' closes one
    line = _PTB_CLOSE.sub('"', line)
    line = normalize_punctuation(line)
    for pattern, repl in _CONTRACTIONS:
        line = pattern.sub(repl, line)
    line = _RUN_ON_RULE.sub(lambda m: " * * * " if "-" in m.group(0) else " — ", line)
    line = _EMPHASIS.sub(r"\1", line)
    line = _fix_quote_spacing(line)
    line = _SPACE_BEFORE.sub(r"\1", line)
    line = _SPACE_AFTER.sub(r"\1", line)
    line = _SPACED_HYPHEN.sub(" — ", line)
    line = re.sub(r"\.(?: \.){2,}", "...", line)
    return " ".join(line.split())


def _fix_quote_spacing(line: str) -> str:
    """Attach free-standing ``"`` marks: alternate opening and closing through the line."""
    if not re.search(r'(?:^|\s)"(?:\s|$)', line):
        return line
    out: list[str] = []
    opening = True
    parts = line.split('"')
    for i, part in enumerate(parts):
        if i == 0:
            out.append(part)
            continue
        if opening:
            out[-1] = out[-1].rstrip(" ") + (" " if out[-1].strip() else "")
            out.append('"' + part.lstrip(" "))
        else:
            out[-1] = out[-1].rstrip(" ")
            out.append('"' + part)
        opening = not opening
    return "".join(out).strip()


def _repair_replacement_chars(text: str) -> str:
    """Guess the quotes, apostrophes and dashes that an upstream encoding error turned into U+FFFD.

    Doubly broken spots (``ï`` + U+FFFD runs among stray apostrophes) were once a curly
    apostrophe, as in ``hadn`` + broken + `` signed`` for "hadn't signed".
    """
    if "\ufffd" not in text:
        return text
    broken = r"'*(?:ï?\ufffd+)+ï?'*"
    text = re.sub(rf"(?<=n){broken}(?=[\s,.;:!?])", "'t", text)
    text = re.sub(rf"(?<=[A-Za-z]){broken}(?=[A-Za-z])", "'", text)
    text = re.sub(r"'*(?:ï\ufffd+)+ï?'*", "", text)
    text = re.sub(r"(?<=[A-Za-z])\ufffd(?=[a-z])", "'", text)
    text = re.sub(r"(?:(?<=^)|(?<=\s))\ufffd(?=\w)", '"', text, flags=re.MULTILINE)
    text = re.sub(r"(?<=[.,!?])\ufffd", '"', text)
    return re.sub("\ufffd+", "\u2014", text)


def dedupe_key(story: str) -> str:
    """The start of the story's letters and digits: matches truncated, re-cased or re-tokenised
    copies of the same story."""
    return re.sub(r"[\W_]+", "", story.lower())[:_KEY_CHARS]


def hash_split(key: str) -> str:
    """A stable ~90/5/5 split for stories whose source has no official split."""
    bucket = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if bucket < 90 else "valid" if bucket < 95 else "test"


# --- reading every layout ------------------------------------------------------------------


@dataclass
class _Raw:
    prompt: str
    story: str
    split: str | None  # None: no official split, assign by hash


@dataclass(order=True)
class _Reader:
    priority: int  # complete pairs with official splits first: they win duplicate checks
    label: str
    source: str = field(compare=False)
    rows: Callable[[IngestReport], Iterator[_Raw]] = field(compare=False)


# File or folder names that say "a model wrote this" (used where rows carry no label).
_MACHINE_NAME = re.compile(
    r"gpt|bart|hint|progen|llama|mistral|claude|palm|davinci|chatgpt|gemini|generated|machine"
    r"|llm|sampled|fake|(?:^|[_\-.])ai(?:[_\-.]|$)|model",
    re.IGNORECASE,
)
_PROMPT_FIELDS = ("prompt", "premise", "title", "writing_prompt", "wp", "input", "context")
_STORY_FIELDS = ("story", "human_story", "text", "body", "content", "target", "response")
_LABEL_FIELDS = ("label", "author_type", "source_type", "origin", "type", "class", "author")
_HUMAN_FLAGS = ("is_human", "human_written", "human")
_MACHINE_FLAGS = ("generated", "is_generated", "machine", "is_machine", "ai_generated", "fake")
_MODEL_FIELDS = ("model", "generator", "llm", "llm_name", "model_name", "generated_by")
# Fields that may name a person or a place (reddit) as well as a model: only a model's name counts.
_ORIGIN_FIELDS = ("source", "written_by", "system", "engine")
_NOT_A_MODEL = {"none", "null", "n/a", "na", "-"}
_HUMAN_WORDS = re.compile(r"human|reddit|user|person|writer|author|people", re.IGNORECASE)
# A model's name as it appears in such a column: whole tokens, versions where a bare word would
# also be a person's name (Claude, Gemma) or a plain word (palm, bloom).
_MODEL_NAME = re.compile(
    r"\b(?:chat)?gpt[-\w.]*|\bopenai\b|\b(?:text-)?davinci\b|\banthropic\b"
    r"|\bclaude[-\s]?(?:\d|instant|v\d|opus|sonnet|haiku)|\bllama[-\s]?\d|\bmi[sx]tral\b"
    r"|\bgemini\b|\bgemma[-\s]?\d|\bgoogle[-\s]palm\b|\bpalm[-\s]?2\b|\bbloomz?-\d|\bfalcon-\d|\bvicuna\b|\balpaca\b"
    r"|\bqwen[-\w.]*|\bdeepseek\b|\bgrok[-\s]?\d|\bbeluga[-\s]?\d|\borca[-\s]?\d"
    r"|\bplatypus\d?\b|\bprogen\b|\bllms?\b|\blanguage model\b|\bchatbot\b"
    r"|\b(?:ai|machine|model|llm)[-\s](?:generated|written)\b|\bsynthetic\b",
    re.IGNORECASE,
)
_SPLIT_NAMES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid"}
_SPLIT_NAMES |= {"dev": "valid", "test": "test"}


def _readers_for(path: Path) -> tuple[list[_Reader], list[str]]:
    """Recognise the layout of ``path`` (file or folder); unknown files are reported, not read."""
    if path.is_dir():
        if any(path.glob("*.wp_source")):
            return [
                _Reader(0, str(path), "writingprompts", lambda r, p=path: _read_fan_dir(p, r))
            ], []
        readers: list[_Reader] = []
        skipped: list[str] = []
        for child in sorted(path.iterdir()):
            if child.name.startswith("."):
                continue
            sub_readers, sub_skipped = _readers_for(child)
            readers += sub_readers
            skipped += sub_skipped
        return readers, skipped
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return [_Reader(0, str(path), "writingprompts", lambda r, p=path: _read_archive(p, r))], []
    if name.endswith((".wp_source", ".wp_target")):
        return _readers_for(path.parent) if name.endswith(".wp_source") else ([], [])
    if name.endswith((".csv", ".json", ".jsonl", ".txt")) and (problem := _text_problem(path)):
        return [], [f"{path} ({problem})"]
    if name.endswith(".csv"):
        return _csv_readers(path)
    if name.endswith((".json", ".jsonl")):
        return _json_readers(path)
    if name.endswith(".txt"):
        return _txt_readers(path)
    return [], [f"{path} (unknown file type)"]


def _text_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as UTF-8 text, or ``None`` when it can.

    The whole file is checked before any of its rows are read, so that a bad file is left out
    whole instead of being cut off part-way at its first bad byte.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as handle:
        chunk = handle.read(_CHUNK)
        if looks_binary(chunk):
            return BINARY_REASON
        while chunk:
            following = handle.read(_CHUNK)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk, final=not following)
            except UnicodeDecodeError as exc:
                return f"not UTF-8 text: bad byte at offset {offset - pending + exc.start}"
            offset += len(chunk)
            chunk = following
    return None


def _read_archive(archive: Path, report: IngestReport) -> Iterator[_Raw]:
    """Unpack the release once into ``raw/writingprompts`` and read its split files."""
    target = paths.raw_dir("writingprompts") / "extracted"
    stamp = target / ".source"
    mark = f"{archive.resolve()}:{archive.stat().st_size}:{archive.stat().st_mtime_ns}"
    if not (stamp.exists() and stamp.read_text() == mark):
        _extract(archive, target)
        atomic_write_text(stamp, mark)
    folders = sorted({p.parent for p in target.rglob("*.wp_source")})
    if not folders:
        raise StoryError(f"{archive} holds no .wp_source/.wp_target files")
    for folder in folders:
        yield from _read_fan_dir(folder, report)


def _extract(archive: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and _safe_member(m.name)]
            for member in members:
                if member.name.endswith((".wp_source", ".wp_target")):
                    tar.extract(member, target, **_tar_filter())
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoryError(f"disk full while unpacking {archive} into {target}") from exc
        raise _UnpackError(f"cannot unpack {archive}: {_one_line(exc)}") from exc
    except (tarfile.TarError, EOFError) as exc:
        raise _UnpackError(f"cannot unpack {archive}: {_one_line(exc)}") from exc


class _UnpackError(StoryError):
    """An archive that is not a whole tar file."""


def _one_line(exc: BaseException) -> str:
    """tarfile lists each compression it tried on a line of its own."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _safe_member(name: str) -> bool:
    parts = Path(name).parts
    return not (Path(name).is_absolute() or ".." in parts)


def _tar_filter() -> dict:
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def _read_fan_dir(folder: Path, report: IngestReport) -> Iterator[_Raw]:
    """``{train,valid,test}.wp_source`` line *i* is the prompt of ``.wp_target`` line *i*.

    A split whose files are not UTF-8 text is left out; the other splits are still read.
    """
    for split in SPLITS:
        source, target = folder / f"{split}.wp_source", folder / f"{split}.wp_target"
        if not (source.exists() and target.exists()):
            continue
        problems = [f"{p} ({why})" for p in (source, target) if (why := _text_problem(p))]
        if problems:
            report.skipped_files += problems
            continue
        with open(source, encoding="utf-8") as prompts, open(target, encoding="utf-8") as stories:
            for prompt, story in zip(prompts, stories, strict=True):
                yield _Raw(prompt, story, split)


def _csv_readers(path: Path) -> tuple[list[_Reader], list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle), [])
    columns = {c.strip().lower(): c for c in header}
    if {"human", "story", "model", "prompt"} <= columns.keys():
        # HANNA: `Story` is LLM output next to the `Human` story for the same prompt.
        return [_Reader(1, str(path), "hanna", lambda r: _read_hanna(path, columns, r))], []
    if {"premise", "text", "author_type"} <= columns.keys():
        reader = _Reader(1, str(path), "psychdepth", lambda r: _read_csv(path, r))
        return [reader], []
    if {"row_id", "prompt", "story"} <= columns.keys():
        # The euclaise re-release subsets: rows of the official train or test split.
        split = "test" if "test" in path.stem.lower() else "train"
        reader = _Reader(1, str(path), "writingprompts-subset", lambda r: _read_csv(path, r, split))
        return [reader], []
    return _dict_reader(path, list(columns), lambda r: _read_csv(path, r))


def _read_hanna(path: Path, columns: dict[str, str], report: IngestReport) -> Iterator[_Raw]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            report.machine["hanna"] += 1  # every row's `Story` column is model-written
            yield _Raw(row[columns["prompt"]], row[columns["human"]], None)


def _read_csv(path: Path, report: IngestReport, split: str | None = None) -> Iterator[_Raw]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        yield from _dict_rows(csv.DictReader(handle), path, report, split)


def _json_readers(path: Path) -> tuple[list[_Reader], list[str]]:
    data = _load_json(path)
    if isinstance(data, dict) and "original" in data and isinstance(data["original"], list):
        # Detection benchmark: `original` is human (the official valid split, prompt glued to
        # the story), `sampled` is model output and is never read.
        return [_Reader(3, str(path), "fastdetect", lambda r: _read_originals(data, r))], []
    if isinstance(data, dict):
        for key in ("data", "rows", "examples", "items"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if not isinstance(data, list) or not data:
        return [], [f"{path} (no list of stories inside)"]
    first = data[0]
    if isinstance(first, dict) and {"label", "data_type", "text"} <= first.keys():
        return [_Reader(2, str(path), "detectrl", lambda r: _read_detectrl(data, r))], []
    if isinstance(first, dict) and {"story", "prompt", "comments"} <= first.keys():
        return [_Reader(1, str(path), "storyer", lambda r: _dict_rows(data, path, r))], []
    if isinstance(first, list) and _is_rank_row(first):
        return [_Reader(1, str(path), "storyer", lambda r: _read_rank_rows(data))], []
    if isinstance(first, list) and _is_scored_story(first):
        return [_Reader(2, str(path), "storyer", lambda r: _read_scored_stories(data))], []
    if isinstance(first, dict):
        return _dict_reader(path, list(first), lambda r: _dict_rows(data, path, r))
    return [], [f"{path} (unrecognised JSON layout)"]


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as handle:
            if path.suffix.lower() == ".jsonl":
                return [
                    _json_line(path, n, line) for n, line in enumerate(handle, 1) if line.strip()
                ]
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise StoryError(f"cannot read {path}: {exc}") from exc


def _json_line(path: Path, number: int, line: str) -> Any:
    """One JSONL row; an error names the file's line (json's own "line 1" is the row's)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise StoryError(
            f"cannot read {path}: line {number} is not JSON ({exc.msg}, column {exc.colno})"
        ) from None


def _read_originals(data: dict, report: IngestReport) -> Iterator[_Raw]:
    report.machine["fastdetect"] += len(data.get("sampled") or [])
    for text in data["original"]:
        if isinstance(text, str):
            yield _Raw("", text, "valid")


def _read_detectrl(rows: list, report: IngestReport) -> Iterator[_Raw]:
    """Only ``label == "human"`` *and* ``data_type == "story"`` rows are human stories; the
    benchmark drew them all from the official train split."""
    for row in rows:
        if not isinstance(row, dict):
            continue
        if row.get("label") != "human":
            report.machine["detectrl"] += 1
        elif row.get("data_type") == "story" and isinstance(row.get("text"), str):
            yield _Raw("", row["text"], "train")


def _is_rank_row(row: list) -> bool:
    return len(row) >= 3 and all(isinstance(v, str) for v in row[:3])


def _is_scored_story(row: list) -> bool:
    return len(row) == 2 and isinstance(row[0], str) and isinstance(row[1], int | float)


def _read_rank_rows(rows: list) -> Iterator[_Raw]:
    """``[prompt, preferred_story, other_story, ...]``: both stories are human posts."""
    for row in rows:
        if isinstance(row, list) and _is_rank_row(row):
            yield _Raw(row[0], row[1], None)
            yield _Raw(row[0], row[2], None)


def _read_scored_stories(rows: list) -> Iterator[_Raw]:
    for row in rows:
        if isinstance(row, list) and _is_scored_story(row):
            yield _Raw("", row[0], None)


def _dict_reader(
    path: Path, columns: list[str], rows: Callable[[IngestReport], Iterator[_Raw]]
) -> tuple[list[_Reader], list[str]]:
    """Generic prompt/story rows: readable only with a story field, and a human label or a name
    that does not suggest a model wrote them."""
    lowered = {c.strip().lower() for c in columns}
    if not lowered & set(_STORY_FIELDS):
        return [], [f"{path} (no story field among {sorted(lowered)[:8]})"]
    labelled = lowered & set(_LABEL_FIELDS + _HUMAN_FLAGS + _MACHINE_FLAGS)
    if not labelled and _machine_named(path):
        return [], [f"{path} (unlabelled rows in a file named like model output)"]
    return [_Reader(1, str(path), _source_name(path), rows)], []


def _dict_rows(
    rows: Iterable[Any], path: Path, report: IngestReport, split: str | None = None
) -> Iterator[_Raw]:
    source = _source_name(path)
    split = split or _SPLIT_NAMES.get(path.stem.lower())
    for row in rows:
        if not isinstance(row, dict):
            continue
        fields = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
        human = _is_human(fields)
        if human is None:
            report.unclear[source] += 1
            continue
        if not human:
            report.machine[source] += 1
            continue
        story = _first_text(fields, _STORY_FIELDS)
        if story is None:
            continue
        row_split = _SPLIT_NAMES.get(str(fields.get("split", "")).strip().lower(), split)
        yield _Raw(_first_text(fields, _PROMPT_FIELDS) or "", story, row_split)


def _is_human(fields: dict[str, Any]) -> bool | None:
    """Who wrote a row: False where anything names a model, True where a label says "human"
    (or says nothing and no model is named), None where the only label is a bare number: 1
    is "human" in one release and "machine" in the next, so such rows are never guessed at."""
    if _names_a_model(fields):
        return False
    numbered = False
    for name in _LABEL_FIELDS:
        value = fields.get(name)
        if isinstance(value, bool | int | float):
            numbered = True
            continue
        if isinstance(value, str) and value.strip():
            label = value.strip().lower()
            if re.fullmatch(r"[-+]?\d+(?:\.\d+)?", label):
                numbered = True
                continue
            return label.startswith("human")
    for name in _HUMAN_FLAGS:
        if name in fields and not isinstance(fields[name], str | type(None)):
            return bool(fields[name])
        if isinstance(fields.get(name), str) and fields[name].strip():
            return fields[name].strip().lower() in ("1", "true", "yes")
    for name in _MACHINE_FLAGS:
        value = fields.get(name)
        if value not in (None, "", 0, False, "0", "false", "False", "no"):
            return False
    return None if numbered else True


def _names_a_model(fields: dict[str, Any]) -> bool:
    """A model column with a value that is not a person's (``human-written``, ``reddit
    user``), or a source-like column holding a model's name."""
    for name in _MODEL_FIELDS:
        value = str(fields.get(name) or "").strip()
        if value and value.lower() not in _NOT_A_MODEL and not _HUMAN_WORDS.search(value):
            return True
    return any(_MODEL_NAME.search(str(fields.get(name) or "")) for name in _ORIGIN_FIELDS)


def _first_text(fields: dict[str, Any], names: Sequence[str]) -> str | None:
    for name in names:
        value = fields.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _txt_readers(path: Path) -> tuple[list[_Reader], list[str]]:
    stem = path.stem.lower()
    if stem.endswith("_opt") and path.with_name(path.name[:-8] + "_ipt.txt").exists():
        return [], []  # read together with its _ipt file
    if stem.endswith("_ipt"):
        outputs = path.with_name(path.name[:-8] + "_opt.txt")
        if not outputs.exists():
            return [], [f"{path} (no matching _opt file)"]
        if problem := _text_problem(outputs):
            return [], [f"{outputs} ({problem})"]
        if _machine_named(path):
            return [], [f"{path} (named like model output)"]
        return [_Reader(3, str(path), "union", lambda r: _read_line_pairs(path, outputs))], []
    with open(path, encoding="utf-8", errors="replace") as handle:
        head = handle.readline()
    if "|||" in head:
        # prompt|||story lines: model samples share this layout, so only a "human" file counts.
        if "human" in stem and not _machine_named(path):
            return [_Reader(3, str(path), "nextchapter", lambda r: _read_bar_pairs(path))], []
        return [], [f"{path} (prompt|||story lines not marked human)"]
    return [], [f"{path} (plain text; use the Gutenberg importer for books)"]


def _read_line_pairs(prompts: Path, stories: Path) -> Iterator[_Raw]:
    """Line *i* of ``*_ipt.txt`` prompts line *i* of ``*_opt.txt``; paragraph breaks survive
    there only as runs of spaces."""
    with open(prompts, encoding="utf-8") as ipt, open(stories, encoding="utf-8") as opt:
        for prompt, story in zip(ipt, opt, strict=False):
            yield _Raw(prompt, re.sub(r" {3,}", "\n\n", story), None)


def _read_bar_pairs(path: Path) -> Iterator[_Raw]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            prompt, sep, story = line.partition("|||")
            if sep:
                yield _Raw(prompt, story, None)


def _machine_named(path: Path) -> bool:
    return bool(_MACHINE_NAME.search(path.stem) or _MACHINE_NAME.search(path.parent.name))


def _source_name(path: Path) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-") or "local"


# --- ingest --------------------------------------------------------------------------------


def download_writingprompts(
    url: str | None = None, *, force: bool = False, console: Console | None = None
) -> IngestReport:
    """Fetch the Fan et al. release (resumable) into ``raw/writingprompts`` and ingest it.

    A new copy is downloaded beside the one already here and replaces it only once it is a
    complete archive, so a bad ``--force`` fetch never costs the good copy."""
    source = DEFAULT_URL if url is None else url
    check_url(source, "--url")
    archive = paths.raw_dir("writingprompts") / ARCHIVE_NAME
    if archive.exists() and not force and (why := _not_an_archive(archive)):
        if console is not None:
            console.print(
                f"{archive.name} from an earlier download {why}; fetching it again",
                highlight=False,
            )
        archive.unlink()
    if force or not archive.exists():
        # Beside a copy already here (--force) so that a bad fetch cannot cost it; else into
        # place, where an interrupted earlier download resumes.
        here = archive.exists()
        target = archive.with_name(archive.name + ".new") if here else archive
        fresh = download(source, target, progress=console)
        if why := _not_an_archive(fresh):
            fresh.unlink()
            kept = "; the copy already here was kept" if here else ""
            raise StoryError(f"download failed: {source} (what the server sent {why}){kept}")
        os.replace(fresh, archive)
    elif url is not None and console is not None:
        console.print(
            f"{archive.name} is already downloaded; reading it (pass --force to fetch {url})",
            highlight=False,
        )
    try:
        return ingest([archive], console=console)
    except _UnpackError as exc:
        raise StoryError(f"{exc}; fetch it again with --force") from exc


def _not_an_archive(path: Path) -> str | None:
    """Why ``path`` is clearly not the release's tar archive (``None`` when it looks like one)."""
    try:
        if why := bad_download(path):
            return why
        return None if tarfile.is_tarfile(path) else "is not a tar archive"
    except OSError:
        return None  # unreadable: unpacking says why


def ingest(sources: Path | Sequence[Path], *, console: Console | None = None) -> IngestReport:
    """Read human pairs from every recognised file under ``sources`` and write the cleaned
    splits, replacing earlier output. Files of unknown layout are listed in the report."""
    sources = [Path(sources)] if isinstance(sources, str | os.PathLike) else list(sources)
    readers: list[_Reader] = []
    report = IngestReport(sources=[str(source.resolve()) for source in sources])
    for source in sources:
        if not source.exists():
            raise StoryError(f"no such file or folder: {source}")
        found, skipped = _readers_for(source)
        readers += found
        report.skipped_files += skipped
    if not readers:
        raise StoryError(_nothing_usable("no WritingPrompts data recognised", sources, report))
    out_dir = paths.clean_dir("writingprompts")
    out_dir.mkdir(parents=True, exist_ok=True)
    writers: dict[str, _TempJsonl] = {}
    seen: set[str] = set()
    try:
        for split in SPLITS:
            writers[split] = _TempJsonl(out_dir / f"{split}.jsonl")
        for reader in sorted(readers):
            if console is not None:
                name = Path(reader.label).name
                console.print(f"reading [bold]{reader.source}[/]: {name}", highlight=False)
            for pair in _clean_pairs(reader, report, seen):
                writers[pair.split].write(pair)
        if not report.kept:  # keep the earlier output rather than replace it with nothing
            raise StoryError(_nothing_usable("no usable WritingPrompts pairs", sources, report))
        for writer in writers.values():  # every split on disk first: a full disk fails here
            writer.finish()
        for writer in writers.values():
            writer.commit()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoryError(f"disk full while writing {out_dir}; nothing was changed") from exc
        raise
    finally:
        for writer in writers.values():
            writer.discard()
    report.replaced = read_report()
    atomic_write_text(out_dir / REPORT, json.dumps(report.to_json(), indent=1))
    return report


def _nothing_usable(what: str, sources: Sequence[Path], report: IngestReport) -> str:
    """One line: what was missing, where, and the first file left out (usually the reason)."""
    reason = f"; not read: {report.skipped_files[0]}" if report.skipped_files else ""
    return f"{what} in {', '.join(map(str, sources))}{reason}"


def _clean_pairs(reader: _Reader, report: IngestReport, seen: set[str]) -> Iterator[Pair]:
    for raw in reader.rows(report):
        story_text = raw.story.strip()
        if story_text.lower() in _DELETED:
            report.dropped[reader.source] += 1
            continue
        story = clean_story(story_text)
        if len(story.split()) < MIN_WORDS:
            report.dropped[reader.source] += 1
            continue
        key = dedupe_key(story)
        if key in seen:
            report.duplicates[reader.source] += 1
            continue
        seen.add(key)
        split = raw.split or hash_split(key)
        report.kept[(reader.source, split)] += 1
        yield Pair(clean_prompt(raw.prompt), story, split, reader.source)


class _TempJsonl:
    """A JSONL file written beside its final path and renamed into place only on commit."""

    def __init__(self, final: Path) -> None:
        self.final = final
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        self.tmp = Path(name)
        try:
            os.fchmod(fd, ordinary_mode())  # mkstemp makes files private; these are ordinary
            self.handle = os.fdopen(fd, "w", encoding="utf-8")
        except BaseException:
            os.close(fd)
            self.tmp.unlink(missing_ok=True)
            raise

    def write(self, pair: Pair) -> None:
        record = {"prompt": pair.prompt, "story": pair.story, "source": pair.source}
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    def finish(self) -> None:
        """Everything on disk, closed; only the rename is left."""
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()

    def commit(self) -> None:
        if not self.handle.closed:
            self.finish()
        os.replace(self.tmp, self.final)

    def discard(self) -> None:
        """Remove the temp file, even when closing it fails (a full disk fails the flush)."""
        try:
            if not self.handle.closed:
                self.handle.close()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                self.tmp.unlink()


def load_pairs(split: str) -> list[Pair]:
    """The cleaned pairs of one split (``train``, ``valid`` or ``test``)."""
    if split not in SPLITS:
        raise StoryError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    path = paths.clean_dir("writingprompts") / f"{split}.jsonl"
    if not path.exists():
        return []
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                pairs.append(Pair(row["prompt"], row["story"], split, row.get("source", "")))
    return pairs


def read_report() -> dict | None:
    """The counts of the last ingest, for ``storytui data status``."""
    try:
        return json.loads((paths.clean_dir("writingprompts") / REPORT).read_text("utf-8"))
    except (OSError, ValueError):
        return None
