"""Every action the writer can take, once: its keys, footer label and help text.

The app's key bindings, the command palette and the help screen are all built from this table,
so a key shown in one place is the key that works everywhere. Keys avoid ctrl+enter and other
combinations many terminals cannot send; F-keys have ctrl/alt twins for terminals that eat them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    action: str  # the app's action_<name>
    keys: str  # Textual key names, comma separated; the first is shown in the footer
    label: str  # short footer label
    help: str  # one line for the palette and the help screen


COMMANDS: tuple[Command, ...] = (
    Command("help", "f1,question_mark", "Help", "Show every key and what it does"),
    Command("continue", "f5,ctrl+g", "Continue", "Let the model continue from the cursor"),
    Command("stop", "escape", "Stop", "Stop the model (keeps what it wrote so far)"),
    Command(
        "retry",
        "ctrl+r",
        "Retry",
        "Replace the continuation with a fresh one; the old one stays an alternative",
    ),
    Command(
        "previous_alternative",
        "f3,alt+left",
        "Prev alt",
        "Show the previous alternative continuation",
    ),
    Command(
        "next_alternative", "f4,alt+right", "Next alt", "Show the next alternative continuation"
    ),
    Command(
        "keep", "ctrl+t", "Keep", "Keep the generated text: unmark it and drop its alternatives"
    ),
    Command(
        "token_alternatives",
        "f9",
        "Tokens",
        "The model's other choices for the generated token at the cursor",
    ),
    Command(
        "toggle_probabilities",
        "f8",
        "Probs",
        "Mark generated tokens by how likely the model found them",
    ),
    Command("toggle_panel", "f2", "Panel", "Show or hide the prompt, memory and sampling panel"),
    Command("pick_model", "ctrl+l", "Model", "Choose the model (loads in the background)"),
    Command("save", "ctrl+s", "Save", "Save the story"),
    Command("save_as", "f12", "Save as", "Save the story under a new name"),
    Command("open", "ctrl+o", "Open", "Open a story file"),
    Command("new", "ctrl+n", "New", "Start a new story in the draft"),
    Command("quit", "ctrl+q", "Quit", "Quit (asks before dropping unsaved changes)"),
)

# Keys the editor itself handles, listed on the help screen.
EDITOR_KEYS: tuple[tuple[str, str], ...] = (  # the editor's own keys, shown as " / " lists
    ("ctrl+z", "Undo: typing, or a whole continuation in one step"),
    ("ctrl+y", "Redo"),
    ("ctrl+x / ctrl+c / ctrl+v", "Cut / copy / paste"),
    ("shift+arrows", "Select text"),
    ("F6 / F7", "Select the line / everything"),
    ("ctrl+left / ctrl+right", "Move by word"),
    ("home / end", "Start / end of the line (also ctrl+a / ctrl+e)"),
    ("pageup / pagedown", "Move by a screen"),
    ("ctrl+home / ctrl+end", "Start / end of the story"),
    ("ctrl+w / alt+delete", "Delete the word before / after the cursor"),
    ("ctrl+u / ctrl+k", "Delete to the start / end of the line"),
    ("ctrl+shift+k", "Delete the line"),
    ("tab / shift+tab", "Move between the story and the panel's fields"),
    ("ctrl+p", "Command palette: every action by name"),
)


def display_key(keys: str) -> str:
    """The keys as a person reads them: ``f5,ctrl+g`` -> ``F5 / ctrl+g``."""
    names = []
    for key in keys.split(","):
        key = {"question_mark": "?", "escape": "Esc"}.get(key, key)
        names.append(key.upper() if key.startswith("f") and key[1:].isdigit() else key)
    return " / ".join(names)
