"""``storytui`` and ``python -m storytui``: the command line, started so that a Ctrl-C during
its first imports (typer, rich: a few hundred milliseconds) also ends in one line."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from storytui.cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("storytui: interrupted\n")
        raise SystemExit(130) from None
    run()


if __name__ == "__main__":
    main()
