"""Every action the writer can take, once: its keys, footer label and help text.

The app's key bindings, the command palette and the help screen are all built from this table,
so a key shown in one place is the key that works everywhere. Keys avoid ctrl+enter and other
combinations many terminals cannot send; F-keys have ctrl/alt twins for terminals that eat them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Command:
    action: str  # the app's action_<name>
    keys: str  # Textual key names, comma separated; the first is shown in the footer
    label: str  # short footer label
    help: str  # one line for the palette and the help screen
    show: bool = True  # in the footer (when it applies); every command is in the palette
    # Run as the key arrives, before the keys behind it (for keys that move the focus: typed
    # right after ctrl+f, "keeper" goes into the find field, not the story).
    priority: bool = False
    # Its key (and palette entry) runs it even when it does not apply, when the footer leaves
    # it out: the action then says why (nothing to retry yet), or Esc does what is left to do
    # (take the focus back to the story). Without this the key would do nothing, silently.
    runs_anyway: bool = False


COMMANDS: tuple[Command, ...] = (
    Command("help", "f1,question_mark", "Help", "Show every key and what it does"),
    Command("continue", "f5,ctrl+g", "Continue", "Let the model continue from the cursor"),
    Command(
        "stop",
        "escape",
        "Stop",
        "Stop the model (keeps what it wrote so far); from a panel field, back to the story",
        runs_anyway=True,
    ),
    Command(
        "retry",
        "ctrl+r",
        "Retry",
        "Replace the continuation with a fresh one; the old one stays an alternative",
        runs_anyway=True,
    ),
    Command(
        "previous_alternative",
        "f3,alt+left",
        "Prev alt",
        "Show the previous alternative continuation",
        runs_anyway=True,
    ),
    Command(
        "next_alternative",
        "f4,alt+right",
        "Next alt",
        "Show the next alternative continuation",
        runs_anyway=True,
    ),
    Command(
        "keep",
        "ctrl+t",
        "Keep",
        "Keep the generated text: unmark it and drop its alternatives",
        runs_anyway=True,
    ),
    Command(
        "token_alternatives",
        "f9",
        "Tokens",
        "The model's other choices for the generated token at the cursor",
        runs_anyway=True,
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
    Command(
        "find",
        "ctrl+f",
        "Find",
        "Find in the story (the selection or the last search)",
        priority=True,
    ),
    Command("quit", "ctrl+q", "Quit", "Quit (asks before dropping unsaved changes)"),
)

# Keys of the find bar (``find_bar.py``), which binds them while one of its fields has focus;
# the actions are the bar's, and work from the palette with the bar closed too. They run as they
# arrive (priority): Esc and ctrl+f move the focus, and the typing right behind them follows.
# Enter is the fields' own key (next, or in the replace field replace then next). Replace all is
# alt+a because ctrl+a is "start of the line" in every field and ctrl+enter and the like do not
# reach the app in many terminals; the palette's "Replace all" serves terminals that keep alt.
FIND_BAR_COMMANDS: tuple[Command, ...] = (
    Command(
        "find_next",
        "enter,down",
        "Next match",
        "Find bar: the next match, round to the first after the last",
        priority=True,
    ),
    Command(
        "find_previous",
        "shift+enter,up",
        "Previous match",
        "Find bar: the previous match, round to the last before the first",
        show=False,
        priority=True,
    ),
    Command(
        "toggle_replace",
        "ctrl+f",
        "Replace",
        "Find bar: show the replace field, or move between it and the find field",
        priority=True,
    ),
    Command(
        "replace_one",
        "enter",
        "Replace match",
        "Find bar: Enter in the replace field replaces the selected match and finds the next",
        show=False,
    ),
    Command(
        "replace_all",
        "alt+a",
        "Replace all",
        "Find bar: replace every match (ctrl+z takes it back in one step)",
        priority=True,
    ),
    Command(
        "close",
        "escape",
        "Close find",
        "Find bar: close it and go back to the story, the match selected",
        priority=True,
    ),
)

# What the footer keeps when the terminal is too narrow for every key, most important first:
# the rest are left out whole, from the end of this list (keys not named here go first).
FOOTER_IMPORTANCE: tuple[str, ...] = (
    "continue",
    "stop",
    "retry",
    "previous_alternative",
    "next_alternative",
    "keep",
    "close",
    "find_next",
    "toggle_replace",
    "replace_all",
    "help",
    "quit",
    "undo",
    "save",
    "toggle_panel",
    "find",
    "token_alternatives",
    "toggle_probabilities",
    "pick_model",
    "open",
    "new",
    "save_as",
)


def footer_rank(action: str) -> int:
    """Where ``action`` stands in ``FOOTER_IMPORTANCE`` (0: kept longest)."""
    try:
        return FOOTER_IMPORTANCE.index(action)
    except ValueError:
        return len(FOOTER_IMPORTANCE)


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


def run_anyway(action: str) -> str:
    """The action string that runs ``action`` even where it does not apply (``runs_anyway``)."""
    return f"run_anyway({action!r})"


def bindings_for(commands: Iterable[Command], skip: frozenset[str] = frozenset()) -> list[Binding]:
    """Key bindings for ``commands``, leaving out the keys in ``skip`` (a widget's own); the
    footer shows F5 and Esc as the help screen writes them, ctrl keys in Textual's own ^g.

    A ``runs_anyway`` command gets a second, hidden binding of the same keys: Textual tries
    it when the first is refused (the action does not apply, so the footer leaves it out)."""
    bindings = []
    for command in commands:
        keys = [key for key in command.keys.split(",") if key not in skip]
        if not keys:
            continue
        display = display_key(keys[0])
        bindings.append(
            Binding(
                ",".join(keys),
                command.action,
                command.label,
                show=command.show,
                priority=command.priority,
                key_display=display if display != keys[0] else None,
                tooltip=command.help,
            )
        )
        if command.runs_anyway:
            bindings.append(
                Binding(
                    ",".join(keys),
                    run_anyway(command.action),
                    command.label,
                    show=False,
                    priority=command.priority,
                )
            )
    return bindings
