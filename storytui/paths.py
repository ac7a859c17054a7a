"""The one place that resolves where storytui keeps things.

Everything lives under the user data dir (platformdirs) or ``$STORYTUI_HOME`` when set:

    models/<name>/   checkpoints (model.safetensors + config.json)
    runs/<name>/     resumable training state and metrics
    data/            downloaded sources, cleaned text and token shards
    tokenizers/      vocabularies trained by ``storytui train tokenizer``
    stories/         the untitled draft (autosave.txt) and recovery/ copies of unsaved files
    cache/           rebuildable: tiktoken's downloads, int4 decode graphs
    settings.json    sampling settings and UI preferences
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import platformdirs

from storytui.errors import StoryError

APP_NAME = "storytui"
BUNDLED_MODEL_NAME = "default"  # how the model shipped in assets/ is named and listed
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # typed on command lines
PACKAGE_DIR = Path(__file__).resolve().parent


def home() -> Path:
    """Root of all user data; ``STORYTUI_HOME`` wins over the platform default."""
    override = os.environ.get("STORYTUI_HOME")
    if override:
        root = Path(override).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise StoryError(f"STORYTUI_HOME={override} is not a directory")
        return root
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def models_dir() -> Path:
    return home() / "models"


def is_model_name(name: str) -> bool:
    """One directory name inside ``models/``: no path that leads out of it (``..``, ``/x``),
    nothing hidden (the temp dirs of a save under way)."""
    return (
        bool(name)
        and name not in (".", "..")
        and not name.startswith(".")
        and not any(char in name for char in "/\\\x00")
    )


def check_model_name(name: str) -> str:
    """``name`` if it names a model directory (any name a model may already have)."""
    if not is_model_name(name):
        raise StoryError(
            f"invalid model name {name!r}: a model is one name inside {models_dir()}, not a path"
        )
    return name


def check_new_model_name(name: str) -> str:
    """A name for a model about to be written: plain letters, digits, '.', '_', '-' (it is
    typed on command lines), and not the bundled model's name, which it would hide."""
    check_plain_name(name, "model")
    if name == BUNDLED_MODEL_NAME:
        raise StoryError(f"{name!r} is the bundled model's name; choose another")
    return name


def check_plain_name(name: str, what: str) -> str:
    """``name`` if it is plain letters, digits, '.', '_', '-': a file or directory name that is
    safe to type and leads nowhere else."""
    if not PLAIN_NAME.fullmatch(name):
        raise StoryError(
            f"invalid {what} name {name!r}: use letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return name


def model_dir(name: str) -> Path:
    return models_dir() / check_model_name(name)


def runs_dir() -> Path:
    return home() / "runs"


def run_dir(name: str) -> Path:
    return runs_dir() / check_model_name(name)  # a run is named after the model it writes


def data_dir() -> Path:
    return home() / "data"


def raw_dir(source: str) -> Path:
    """Downloaded files exactly as fetched (e.g. ``gutenberg``, ``writingprompts``)."""
    return data_dir() / "raw" / source


def clean_dir(source: str) -> Path:
    """Cleaned text: one file per book, or JSONL prompt/story pairs per split."""
    return data_dir() / "clean" / source


def shards_dir(name: str) -> Path:
    """Token shards for one dataset built with one tokenizer."""
    return data_dir() / "shards" / name


def cache_dir() -> Path:
    return home() / "cache"


def trained_tokenizers_dir() -> Path:
    """Vocabularies trained by ``storytui train tokenizer`` (the bundled ones are assets). Not
    in ``cache/``: retrained on other text, a vocabulary comes out different."""
    return home() / "tokenizers"


def legacy_tokenizers_dir() -> Path:
    """Where earlier versions wrote trained vocabularies; still read."""
    return cache_dir() / "tokenizers"


def tiktoken_cache_dir() -> Path:
    """Where tiktoken keeps its download of the GPT-2 vocabulary."""
    return cache_dir() / "tiktoken"


def weight_checks_path() -> Path:
    """Which checkpoint weights files were found to hold only finite numbers (or not)."""
    return cache_dir() / "weight-checks.json"


def graph_cache_dir() -> Path:
    """int4 decode graphs, built from a checkpoint once and reused."""
    return cache_dir() / "int4-graphs"


def stories_dir() -> Path:
    return home() / "stories"


def autosave_path() -> Path:
    return stories_dir() / "autosave.txt"


def recovery_dir() -> Path:
    """Unsaved edits to named story files, kept until the writer saves or discards them."""
    return stories_dir() / "recovery"


def settings_path() -> Path:
    return home() / "settings.json"


def assets_dir() -> Path:
    """Bundled assets: inside the package when installed as a wheel, else the repo's ``assets/``."""
    packaged = PACKAGE_DIR / "assets"
    if packaged.is_dir():
        return packaged
    return PACKAGE_DIR.parent / "assets"


def tokenizer_assets_dir() -> Path:
    return assets_dir() / "tokenizer"


def bundled_model_dir() -> Path:
    """The default model that ships with storytui; ``STORYTUI_BUNDLED_MODEL`` points elsewhere
    (tests point it at an empty path to see the app as a user with no model would)."""
    override = os.environ.get("STORYTUI_BUNDLED_MODEL")
    if override:
        return Path(override).expanduser()
    return assets_dir() / "models" / "default"


def stylesheet_path() -> Path:
    """The app's Textual stylesheet."""
    return assets_dir() / "styles" / "storytui.tcss"
