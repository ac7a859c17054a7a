"""The one function that turns prompt + memory + story into the text the model sees.

Finetuning formats every WritingPrompts pair with it and the app formats the writer's story with
it, so the model always sees at inference exactly the layout it was trained on.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

# storytui's own layout: short headers a writer would recognise; the story is last so that
# continuing it is plain next-token prediction.
DEFAULT_TEMPLATE = "[Prompt] {prompt}\n[Memory] {memory}\n[Story]\n"
PROMPT_ONLY_TEMPLATE = "[Prompt] {prompt}\n[Story]\n"
# The layout the imported seed models were finetuned on; they know no memory slot.
SEED_PROMPT_TEMPLATE = (
    "Below is a writing prompt. Write a creative story based on it.\n\n"
    "### Prompt:\n{prompt}\n\n### Story:\n"
)
SEED_STOP_STRINGS = ("Below is a writing", "###", "\n\n\n")


@dataclass(frozen=True)
class StoryTemplate:
    """How a checkpoint wants its conditioning laid out (recorded in its config.json)."""

    with_memory: str = DEFAULT_TEMPLATE
    prompt_only: str = PROMPT_ONLY_TEMPLATE
    stop_strings: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {
            "with_memory": self.with_memory,
            "prompt_only": self.prompt_only,
            "stop_strings": list(self.stop_strings),
        }

    def __post_init__(self) -> None:
        """Refuse a layout ``format_story`` could not fill (a hand-edited config.json), here
        rather than when the writer first sets a prompt."""
        for name, allowed in (("with_memory", {"prompt", "memory"}), ("prompt_only", {"prompt"})):
            text = getattr(self, name)
            if not isinstance(text, str):
                raise ValueError(f"template {name} must be text, not {text!r}")
            try:
                fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
            except ValueError as exc:
                raise ValueError(f"template {name} is not a valid layout ({exc})") from None
            unknown = sorted(fields - allowed)
            if unknown:
                slots = ", ".join("{" + slot + "}" for slot in sorted(allowed))
                raise ValueError(
                    f"template {name} has unknown slot {{{unknown[0]}}} (it may use {slots})"
                )
        if not all(isinstance(stop, str) and stop for stop in self.stop_strings):
            raise ValueError("template stop_strings must be non-empty strings")

    @classmethod
    def from_json(cls, data: dict | None) -> StoryTemplate:
        if not data:
            return cls()
        if not isinstance(data, dict):
            raise ValueError(f"template must be an object, not {data!r}")
        stops = data.get("stop_strings", ())
        if not isinstance(stops, list | tuple):
            raise ValueError(f"template stop_strings must be a list, not {stops!r}")
        return cls(
            with_memory=data.get("with_memory", DEFAULT_TEMPLATE),
            prompt_only=data.get("prompt_only", PROMPT_ONLY_TEMPLATE),
            stop_strings=tuple(stops),
        )


SEED_TEMPLATE = StoryTemplate(
    with_memory=SEED_PROMPT_TEMPLATE,
    prompt_only=SEED_PROMPT_TEMPLATE,
    stop_strings=SEED_STOP_STRINGS,
)


@dataclass(frozen=True)
class FormattedStory:
    """``header`` is the conditioning (not trained on in finetuning); ``story`` follows it."""

    header: str
    story: str

    @property
    def text(self) -> str:
        return self.header + self.story


def format_story(
    story: str,
    prompt: str = "",
    memory: str = "",
    template: StoryTemplate | None = None,
) -> FormattedStory:
    """Lay out a story for the model; with neither prompt nor memory the story stands alone.

    A plain story (pretraining text, or a writer who uses no prompt) gets no header at all, so a
    pretrained-only model continues it as ordinary prose.
    """
    template = template or StoryTemplate()
    prompt = prompt.strip()
    memory = memory.strip()
    if memory and "{memory}" not in template.with_memory:
        memory = ""  # a template without a memory slot ignores memory
    if not prompt and not memory:
        return FormattedStory(header="", story=story)
    if memory:
        header = template.with_memory.format(prompt=prompt, memory=memory)
    else:
        header = template.prompt_only.format(prompt=prompt)
    return FormattedStory(header=header, story=story)
