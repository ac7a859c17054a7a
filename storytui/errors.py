"""One exception type for every problem the user can fix: the CLI prints it as one line."""


class StoryError(Exception):
    """A user-facing error; its message is a complete, one-line explanation."""
