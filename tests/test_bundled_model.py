"""The default model that ships: found from a clone and from a wheel, loaded like any other."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from storytui import paths
from storytui.checkpoint import load_checkpoint, resolve_model
from storytui.cli import main

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "assets" / "models" / "default"
pytestmark = pytest.mark.skipif(
    not (BUNDLED / "config.json").is_file(), reason="no bundled model in assets/"
)


@pytest.fixture
def with_bundled(monkeypatch) -> Path:
    monkeypatch.delenv("STORYTUI_BUNDLED_MODEL")
    return paths.bundled_model_dir()


def test_bundled_model_is_the_fallback_and_validates(with_bundled: Path) -> None:
    assert with_bundled.resolve() == BUNDLED.resolve()
    assert resolve_model(None).resolve() == BUNDLED.resolve()
    checkpoint = load_checkpoint(resolve_model("default"))
    assert checkpoint.meta.stage == "finetune"
    assert checkpoint.meta.weights_dtype == "float16"
    size = sum(f.stat().st_size for f in BUNDLED.iterdir())
    assert size <= 80 * 2**20


def test_continue_uses_bundled_model_with_no_training(
    with_bundled: Path, tmp_path: Path, capsys
) -> None:
    story = tmp_path / "story.txt"
    story.write_text("The storm broke over the harbour, and")
    with pytest.raises(SystemExit) as exit_info:
        main(["continue", str(story), "--max-tokens", "12", "--seed", "1"])
        raise SystemExit(0)
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0, err
    assert len(out.strip()) > 0


def test_wheel_ships_tokenizer_and_default_model(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(REPO),
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("storytui-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "storytui/assets/tokenizer/storytui-16k.tiktoken",
        "storytui/assets/models/default/model.safetensors",
        "storytui/assets/models/default/config.json",
        "storytui/assets/styles/storytui.tcss",
    ):
        assert required in names
