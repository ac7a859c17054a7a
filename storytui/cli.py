"""The ``storytui`` command: the TUI by default, plus continue / models / train / data.

Heavy imports (torch, textual) happen inside the commands so that ``--help`` is instant and the
TUI can show its editor before the model stack has loaded.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from storytui.errors import StoryError

app = typer.Typer(
    help=(
        "Co-write stories in the terminal with a small language model you train yourself. "
        "`storytui [FILE]` opens the co-writing app on FILE (or on the last story)."
    ),
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
models_app = typer.Typer(
    help="List, inspect, import and evaluate models.", invoke_without_command=True
)
app.add_typer(models_app, name="models")


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

        typer.echo(f"storytui {version('storytui')}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Options that come before any command."""


def _mount_trainer() -> None:
    """The trainer's command groups (light modules: they import torch only when run)."""
    from trainer.cli import data_app, train_app

    app.add_typer(
        train_app, name="train", help="Train a tokenizer or a model (pretrain, finetune)."
    )
    app.add_typer(data_app, name="data", help="Download and prepare training data.")


@app.command("open", hidden=True)
def open_tui(file: Annotated[Path | None, typer.Argument()] = None) -> None:
    """Open the co-writing app (what plain `storytui [FILE]` does)."""
    if file is not None:
        _check_openable(file)  # a bad FILE is the first thing to hear about, terminal or not
    if problem := _terminal_problem():
        raise StoryError(
            f"the app needs a terminal, and {problem}; to continue a story without one: "
            "storytui continue FILE"
        )
    from storytui.tui.app import run_app

    run_app(file)


def _check_openable(file: Path) -> None:
    """The one-line error the app would give FILE at start-up, found without touching any
    file (opening also adopts or sets aside recovery copies: only once the app runs)."""
    from storytui.tui.story_files import folder_problem, load_story

    path = file.expanduser().absolute()
    if path.exists():
        load_story(path)
    elif problem := folder_problem(path):
        raise StoryError(problem)


def _terminal_problem() -> str | None:
    """Why the app could not run here (None: it can): it reads keys from standard input and
    draws on standard error (standard output on Windows), as Textual's drivers do. Without a
    terminal there it would draw into a file or pipe and wait for keys that never come."""
    if os.environ.get("TEXTUAL_DRIVER"):  # another driver (`textual serve`) talks its own way
        return None
    windows = os.name == "nt"
    screen = sys.__stdout__ if windows else sys.__stderr__
    where = "standard output" if windows else "standard error"
    streams = (("standard input", sys.__stdin__), (f"{where} (where it draws)", screen))
    for name, stream in streams:
        try:
            if stream is not None and os.isatty(stream.fileno()):
                continue
        except (OSError, ValueError):  # closed, or a stream without a file descriptor
            pass
        return f"{name} is not one"
    return None


@app.command("continue")
def continue_story(
    file: Annotated[str, typer.Argument(help="Story file to continue, or - for standard input.")],
    in_place: Annotated[
        bool, typer.Option("--in-place", "-i", help="Append the continuation to FILE (atomically).")
    ] = False,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model name or checkpoint directory.")
    ] = None,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", "-n", help="Tokens to generate.")
    ] = 200,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.8,
    top_k: Annotated[int, typer.Option("--top-k", help="0 = off.")] = 0,
    top_p: Annotated[float, typer.Option("--top-p", help="1 = off.")] = 0.95,
    min_p: Annotated[float, typer.Option("--min-p", help="0 = off.")] = 0.05,
    repetition_penalty: Annotated[
        float, typer.Option("--repetition-penalty", help="1 = off.")
    ] = 1.1,
    dry_multiplier: Annotated[float, typer.Option("--dry", help="DRY multiplier; 0 = off.")] = 0.0,
    stop: Annotated[
        list[str] | None, typer.Option("--stop", help="Stop at this text (repeatable).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Same seed + settings = same text.")] = None,
    prompt: Annotated[
        str, typer.Option(help="Writing prompt the model sees before the story.")
    ] = "",
    memory: Annotated[str, typer.Option(help="Memory / author's note the model sees.")] = "",
    precision: Annotated[
        str | None,
        typer.Option(help="fp32, bf16, int8 or int4 (default: fastest that stays faithful)."),
    ] = None,
) -> None:
    """Stream a continuation of FILE to standard output."""
    from storytui.sampling import SamplingSettings
    from storytui.textfile import decode_text, normalize_newlines, read_story_bytes, story_label

    settings = SamplingSettings(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repetition_penalty=repetition_penalty,
        dry_multiplier=dry_multiplier,
        max_new_tokens=max_tokens,
        stop=tuple(stop or ()),
        seed=seed,
        top_alternatives=0,
    ).validate()
    if in_place:
        _check_writable_story(file)
    on_disk = read_story_bytes(file)
    original = decode_text(on_disk, story_label(file))

    from storytui.session import load_generator

    generator = load_generator(model, precision=precision, on_skip=_warn_skipped)
    _warn_if_conditioning_cut(generator, prompt, memory)
    pieces: list[str] = []
    out = _Output(sys.stdout)
    story = normalize_newlines(original)  # the model, like the app, sees "\n" line breaks
    try:
        for delta in generator.stream(story, settings, prompt=prompt, memory=memory):
            pieces.append(delta)
            if not out.write(delta) and not in_place:
                return  # the reader went away (`| head`): nothing more to write for
    except KeyboardInterrupt:
        if pieces:  # end the text's line, as a whole continuation does: the error line
            out.write("\n")  # then starts a line of its own in a terminal
        raise
    out.write("\n")
    if not "".join(pieces):
        print(f"storytui: {_why_empty(generator.last_stats, settings)}", file=sys.stderr)
    if in_place and pieces:  # the file's own bytes stay exactly as they were; the
        # continuation follows (an empty one leaves the file alone: same inode, same date)
        from storytui.atomic import atomic_write_bytes
        from storytui.textfile import appended_bytes

        if read_story_bytes(file) != on_disk:
            raise StoryError(f"{file} changed while generating; the continuation was not written")
        atomic_write_bytes(Path(file), on_disk + appended_bytes(on_disk, "".join(pieces)))


def _why_empty(stats, settings) -> str:
    """What made a continuation empty, from how its generation stopped."""
    if stats.stopped_by == "eot":
        return (
            "the model ended the story at once (it wrote end-of-text first); "
            "try another --seed or a higher --temperature"
        )
    if stats.stopped_by == "stop_string":
        if stats.stop_string in settings.stop:
            return (
                f"the continuation is empty: it began with the stop string "
                f"{stats.stop_string!r}; try another --seed or another --stop"
            )
        return (
            f"the continuation is empty: it began with {stats.stop_string!r}, one of the "
            "model's own stop strings; try another --seed"
        )
    if stats.stopped_by == "max_tokens":
        return (
            f"the continuation is empty: its {stats.new_tokens} token(s) added no text; "
            "try a higher --max-tokens"
        )
    return "the continuation is empty"


def _check_writable_story(file: str) -> None:
    """Refuse an ``-i`` that could not end well before generating: stdin, a device or a pipe
    (which a rename would replace with a plain file), a read-only story or folder."""
    if file == "-":
        raise StoryError("--in-place needs a file, not standard input")
    path = Path(file).expanduser()
    if path.exists() and not path.is_dir() and not path.is_file():
        raise StoryError(f"--in-place needs a regular file; {path} is a device, pipe or socket")
    if path.is_file() and not os.access(path, os.W_OK):
        raise StoryError(f"{path} is read-only; nothing was changed")
    folder = Path(os.path.realpath(path)).parent
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise StoryError(
            f"cannot write in {folder} (-i writes the new version beside the story, then "
            "renames it); nothing was changed"
        )


class _Output:
    """Standard output that notices a reader going away (`| head`) instead of failing: ``-i``
    still writes the file, and nothing prints a broken-pipe traceback at exit."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.open = True

    def write(self, text: str) -> bool:
        if self.open:
            try:
                self.stream.write(text)
                self.stream.flush()
            except BrokenPipeError:
                self.open = False
                self._discard_the_rest()
            except OSError as exc:  # a full disk under `> file`, /dev/full, an I/O error
                self.open = False
                self._discard_the_rest()
                raise StoryError(
                    f"cannot write to standard output: {exc.strerror or exc}; nothing was changed"
                ) from exc
        return self.open

    def _discard_the_rest(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)  # the exit-time flush goes nowhere
        os.dup2(devnull, self.stream.fileno())


def _warn_if_conditioning_cut(generator, prompt: str, memory: str) -> None:
    cut = [f"--{name}" for name in generator.conditioning_cut(prompt, memory)]
    if cut:
        print(
            f"storytui: warning: the model reads at most {generator.header_limit} tokens of "
            f"prompt and memory; the end of {' and '.join(cut)} was left out",
            file=sys.stderr,
        )


def _warn_skipped(reason: str) -> None:
    print(f"storytui: warning: skipped a model that does not load: {reason}", file=sys.stderr)


@models_app.callback()
def models_default(ctx: typer.Context) -> None:
    """Without a subcommand: list the checkpoints in the data dir."""
    if ctx.invoked_subcommand is None:
        from storytui.model_views import print_model_list

        print_model_list()


@models_app.command("list")
def models_list() -> None:
    """List the checkpoints in the data dir (and the bundled default)."""
    from storytui.model_views import print_model_list

    print_model_list()


@models_app.command("info")
def models_info(
    name: Annotated[str, typer.Argument(help="Model name or checkpoint directory.")],
) -> None:
    """Show one checkpoint's details and loss curve."""
    from storytui.model_views import print_model_info

    print_model_info(name)


@models_app.command("rm")
def models_rm(
    name: Annotated[str, typer.Argument(help="Model name in the data dir.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete a checkpoint from the data dir."""
    from storytui.model_views import remove_model

    remove_model(name, confirm=not yes)


@models_app.command("import")
def models_import(
    file: Annotated[Path, typer.Argument(help="An original seed-model .pt checkpoint.")],
    name: Annotated[str, typer.Option("--name", help="Name of the new model in the data dir.")],
    force: Annotated[bool, typer.Option("--force", help="Replace a model of that name.")] = False,
) -> None:
    """Convert an original 76.9M seed-model checkpoint (lecture GPT, .pt) into a storytui model."""
    from storytui.seed_import import import_seed_checkpoint, print_import_summary

    print_import_summary(import_seed_checkpoint(file, name, force=force))


@models_app.command("presets")
def models_presets() -> None:
    """Every model preset with its exact parameter count."""
    from storytui.model_views import print_presets

    print_presets()


@models_app.command("eval")
def models_eval(
    name: Annotated[
        str | None, typer.Argument(help="Model name or directory (default: best available).")
    ] = None,
    split: Annotated[str, typer.Option(help="WritingPrompts split: valid or test.")] = "valid",
    samples: Annotated[int, typer.Option(help="Continuations of 200 tokens to generate.")] = 8,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="Tokens scored per corpus.")
    ] = 100_000,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the report as JSON.")
    ] = None,
) -> None:
    """Bits per byte, word perplexity and sample diversity on held-out data."""
    from trainer.eval_cli import run_eval

    run_eval(name, split=split, samples=samples, max_tokens=max_tokens, json_out=json_out)


KNOWN_COMMANDS = {"continue", "models", "train", "data", "open"}


def main(argv: list[str] | None = None) -> None:
    """Entry point: route `storytui [FILE]` to the TUI, print user errors as one line."""
    from typer.exceptions import TyperException

    if sys.stdout is None:  # started with standard output closed (`>&-`)
        _fail("standard output is closed; nothing was done", 1)
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0] not in KNOWN_COMMANDS and not args[0].startswith("-")):
        _refuse_mistyped_command(args)
        args = ["open", *args]
    try:
        _mount_trainer()
        code = app(args=args, prog_name="storytui", standalone_mode=False, **_help_layout())
    except StoryError as exc:
        _fail(str(exc), 1)
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    except TyperException as exc:  # bad flags and values: click's usage errors
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        _fail(" ".join(message.split()), getattr(exc, "exit_code", 2))
    except BrokenPipeError:
        sys.stderr.close()  # reader went away (e.g. `| head`): not an error worth printing
        sys.exit(0)
    except SystemExit as exc:  # rich and click end output whose reader went away with 1
        if exc.code == 1 and isinstance(exc.__context__, BrokenPipeError):
            sys.exit(0)
        raise
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            _fail("disk full; nothing was changed", 1)
        _fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), 1)
    if code == 130:  # typer turns Ctrl-C inside a command into exit code 130
        _fail("interrupted", 130)
    if isinstance(code, int) and code:
        sys.exit(code)


def _help_layout() -> dict[str, int]:
    """Below 80 columns rich's option tables cut option names to `--in-pl…`; click's plain
    layout keeps them whole (every group inherits the mode), at the terminal's own width
    (click would not go below 50). Returns the context settings for ``app()``."""
    import shutil

    columns = shutil.get_terminal_size().columns
    narrow = columns < HELP_TABLE_COLUMNS
    app.rich_markup_mode = None if narrow else "rich"
    if not narrow:
        return {}
    context = typer.Context.__mro__[1]  # click's Context, or the copy of it typer ships
    if not getattr(context.formatter_class, "narrow", False):
        context.formatter_class = _narrow_help_formatter(context.formatter_class)
    return {"terminal_width": max(20, columns - 2)}


HELP_TABLE_COLUMNS = 80  # the narrowest width at which every command's option table fits


def _narrow_help_formatter(base: type) -> type:
    class NarrowHelpFormatter(base):
        """Options longer than a third of the width go on a line of their own, so that their
        help keeps two thirds of it instead of a column too narrow for its words."""

        narrow = True

        def write_dl(self, rows, col_max: int = 30, col_spacing: int = 2) -> None:
            super().write_dl(rows, min(col_max, max(8, self.width // 3)), col_spacing)

    return NarrowHelpFormatter


def _refuse_mistyped_command(args: list[str]) -> None:
    """`storytui contine story.txt` is a typo, not a story named "contine" to open."""
    import difflib

    if not args or Path(args[0]).exists() or any(mark in args[0] for mark in "./\\"):
        return  # a name with an extension or a folder is a story to create
    commands = sorted(KNOWN_COMMANDS - {"open"})
    close = difflib.get_close_matches(args[0], commands, n=1, cutoff=0.8)
    if close:
        _fail(
            f"no command {args[0]!r} (did you mean {close[0]!r}?); to open a new story of that "
            f"name: storytui ./{args[0]}",
            2,
        )


def _fail(message: str, code: int) -> None:
    if sys.stdout is not None:
        sys.stdout.flush()
    line = f"storytui: error: {message}" if code != 130 else "storytui: interrupted"
    # one write, newline included: print() writes the newline separately, and the processes of
    # a DDP run share one stderr, so two ranks' lines could run together
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
