"""How long ``storytui continue`` takes to print its first word, from a cold process.

    .venv/bin/python bench/bench_startup.py            # colab preset, about 2 minutes
    .venv/bin/python bench/bench_startup.py --preset small

A checkpoint of the chosen preset (random weights) is saved in a scratch ``STORYTUI_HOME``;
each timing is a new ``storytui continue`` process on a 1,000-token story (Moby-Dick when the
data is present), from launch to its first byte on stdout, and to its exit after 16 tokens.
Three ways of starting, alternated round by round:

- ``before``: as storytui started before it kept int4 graphs: the weights are drawn at random
  before the checkpoint overwrites them (also those of the shape check's model on the meta
  device, where that imports torch's compiler), and the int4 decode graph is built (``onnx``
  imported, every matrix rounded, the graph serialized);
- ``first start``: the checkpoint loads into an uninitialised model; the graph is built and
  saved to the cache (the first run of a new checkpoint);
- ``later starts``: the graph is read back from the cache (every run after that).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_report, scratch_home
from bench_generate import story_token_ids

from storytui import graph_cache
from storytui.checkpoint import CheckpointMeta, save_checkpoint
from storytui.generation import DEFAULT_PRECISION
from storytui.model import PRESETS, StoryModel
from storytui.tokenizer import load_tokenizer

MODES = ("before", "first start", "later starts")
# the `before` child: the CLI with the random initialisation put back and no graph cache
BEFORE = """
import sys
import storytui.checkpoint, storytui.graph_cache, storytui.model
build = storytui.model.build_model
storytui.checkpoint.build_model = lambda config, initialize=True: build(config)
storytui.graph_cache.load_or_build = lambda key, build, loads: loads(build())
from storytui.cli import main
sys.argv = ["storytui", *sys.argv[1:]]
main()
"""


def story_text(tokenizer, tokens: int) -> str:
    ids = story_token_ids(tokenizer, tokens)
    return tokenizer.decode(ids)


def time_start(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds to the first byte on stdout, seconds to exit) of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = process.stdout.read(1)
    first_at = time.perf_counter() - started
    _, errors = process.communicate()  # both pipes at once: a chatty stderr cannot block it
    done_at = time.perf_counter() - started
    if process.returncode or not first:
        raise SystemExit(f"storytui continue failed: {errors.decode(errors='replace').strip()}")
    return first_at, done_at


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="colab", choices=["small", "colab"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--context", type=int, default=1000, help="tokens of story")
    args = parser.parse_args(argv)
    print("\n".join(machine_report()))
    with scratch_home() as home:  # for this process's paths and the children's
        env = dict(os.environ)
        tokenizer = load_tokenizer()
        torch.manual_seed(0)
        model = StoryModel(PRESETS[args.preset].config(tokenizer.n_vocab))
        meta = CheckpointMeta(
            model=model.config,
            tokenizer=tokenizer.name,
            tokenizer_hash=tokenizer.hash,
            preset=args.preset,
        )
        checkpoint = save_checkpoint(home / "models" / "bench", model, meta)
        story = home / "story.txt"
        story.write_text(story_text(tokenizer, args.context), encoding="utf-8")
        print(
            f"model: {args.preset} preset, {model.num_parameters():,} parameters, "
            f"{(checkpoint / 'model.safetensors').stat().st_size / 1e6:.0f} MB of weights; "
            f"precision {DEFAULT_PRECISION}; story {len(tokenizer.encode(story.read_text())):,} "
            f"tokens; {args.rounds} rounds"
        )
        script = Path(sys.executable).with_name("storytui")  # the installed console script
        cli = [str(script) if script.exists() else "storytui", "continue", str(story)]
        cli += ["--model", "bench", "--max-tokens", "16", "--seed", "1"]
        commands = {
            "before": [sys.executable, "-c", BEFORE, *cli[1:]],
            "first start": cli,
            "later starts": cli,
        }
        graphs = graph_cache.graph_dir()
        time_start(cli, env)  # warm the page cache for the weights and the libraries
        timings: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                if mode != "later starts":
                    shutil.rmtree(graphs, ignore_errors=True)
                timings[mode].append(time_start(commands[mode], env))
        print()
        print("| start | first byte s | exit after 16 tokens s | first byte × before |")
        print("|---|---:|---:|---:|")
        reference = statistics.median(t[0] for t in timings["before"])
        for mode in MODES:
            first = statistics.median(t[0] for t in timings[mode])
            done = statistics.median(t[1] for t in timings[mode])
            print(f"| {mode} | {first:.2f} | {done:.2f} | {reference / first:.2f}× |")
        sizes = [p.stat().st_size for p in graphs.glob("*.onnx")]
        print(f"\ncached graph: {sum(sizes) / 1e6:.1f} MB in {graphs.name}/")


if __name__ == "__main__":
    main()
