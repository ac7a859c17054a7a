"""The one training loop, for pretraining and finetuning alike.

Each optimizer step accumulates gradients over micro-batches (skipping DDP's all-reduce on all
but the last), clips them, and takes an AdamW step at the scheduled learning rate. Evaluation
measures validation loss and bits per byte and writes a sample; the best model by validation
loss goes to ``models/NAME`` and the full resumable state to ``runs/NAME/latest``. Ctrl-C or
SIGTERM ends the step in progress, saves, and returns; ``resume`` continues bit for bit.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from storytui import paths
from storytui.allocator import keep_all_freed_memory
from storytui.checkpoint import CheckpointMeta, load_weights
from storytui.errors import StoryError
from storytui.model import build_model
from storytui.sampling import SEED_LIMIT
from trainer import distributed, run_state
from trainer.distributed import DistContext
from trainer.progress import (
    Plan,
    TimeLeft,
    TrainProgress,
    evals_after,
    output_lost,
    print_plan,
    print_plan_head,
    run_console,
)
from trainer.stages import Hyperparameters, RunSpec, lr_at, total_steps
from trainer.throughput import (
    Precision,
    flops_per_token,
    peak_flops,
    resolve_device,
    resolve_precision,
    time_micro_step,
)

LOG_AT_LEAST_EVERY_S = 60.0  # slow steps (a CPU run) still log once a minute
FUSED_ADAMW_DEVICES = ("cuda",)  # on the CPU the bench measures no consistent gain
# Why a run ended; ranks agree on the highest-ranked reason any of them has.
STOP_REASONS = ("done", "time budget", "halt", "SIGTERM", "SIGINT", "SIGHUP", "output closed")


@dataclass
class RunResult:
    name: str
    steps: int
    total_steps: int
    tokens_seen: int
    val_loss: float | None
    val_bpb: float | None
    stopped_by: str  # one of STOP_REASONS
    model_dir: Path
    latest_dir: Path
    plan: Plan | None = None


@dataclass(frozen=True)
class EvalResult:
    loss: float
    bpb: float | None
    tokens: int


# ---------------------------------------------------------------------------- building blocks


def make_optimizer(
    model: nn.Module, hp: Hyperparameters, device: torch.device, fused: bool | None = None
) -> torch.optim.AdamW:
    """AdamW with weight decay on 2-D weights only (not norms); fused kernels on CUDA.

    ``fused`` None picks the fused kernel on ``FUSED_ADAMW_DEVICES``: on the CPU
    bench/bench_train.py measured it no faster; on CUDA it is PyTorch's recommended default.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": hp.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    if fused is None:
        fused = device.type in FUSED_ADAMW_DEVICES
    return torch.optim.AdamW(groups, lr=hp.lr, betas=hp.betas, fused=fused or None)


class TrainStep:
    """One optimizer step over ``grad_accum`` micro-batches: the heart of the loop.

    ``model`` is what runs forward (maybe compiled, maybe DDP); ``params`` are the raw weights.
    Returns the mean micro-batch loss and the gradient norm before clipping, as tensors (no
    device sync).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        precision: Precision,
        grad_accum: int,
        grad_clip: float | None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.precision = precision
        self.grad_accum = grad_accum
        self.grad_clip = grad_clip
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.scaler = torch.amp.GradScaler(precision.device_type, enabled=precision.needs_scaler)

    def __call__(self, next_batch, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = None
        for micro in range(self.grad_accum):
            x, y = next_batch()
            last = micro == self.grad_accum - 1
            with distributed.maybe_no_sync(self.model, skip_sync=not last):
                with self.precision.autocast():
                    _, loss = self.model(x, y)
                self.scaler.scale(loss / self.grad_accum).backward()
            total = loss.detach() if total is None else total + loss.detach()
        self.scaler.unscale_(self.optimizer)
        max_norm = self.grad_clip if self.grad_clip else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return total / self.grad_accum, grad_norm


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    split: str,
    batch_size: int,
    block_size: int,
    max_batches: int,
    precision: Precision,
    device: torch.device,
    byte_lengths: torch.Tensor,
) -> EvalResult | None:
    """Mean loss over unmasked targets, and bits per byte: Σ nats / ln 2 / Σ target bytes."""
    was_training = model.training
    model.eval()
    nats = torch.zeros((), dtype=torch.float64, device=device)
    n_tokens = torch.zeros((), dtype=torch.int64, device=device)
    n_bytes = torch.zeros((), dtype=torch.int64, device=device)
    lengths = byte_lengths.to(device)
    try:
        for x, y in data.iter_eval_batches(split, batch_size, block_size, max_batches):
            x, y = x.to(device), y.to(device).flatten()
            with precision.autocast():
                logits, _ = model(x)
            losses = F.cross_entropy(
                logits.float().flatten(0, 1), y, ignore_index=-100, reduction="none"
            )
            keep = y != -100
            nats += losses[keep].double().sum()
            n_tokens += keep.sum()
            n_bytes += lengths[y[keep]].sum()
    finally:
        model.train(was_training)
    tokens, total_bytes, total_nats = int(n_tokens), int(n_bytes), float(nats)
    if tokens == 0:
        return None
    bpb = total_nats / math.log(2) / total_bytes if total_bytes else None
    return EvalResult(loss=total_nats / tokens, bpb=bpb, tokens=tokens)


def generate_sample(model: nn.Module, spec: RunSpec) -> str:
    """A short seeded continuation: the pretrain opening, or a story for the finetune prompt."""
    from storytui.generation import Generator
    from storytui.sampling import SamplingSettings

    device = next(model.parameters()).device
    sampler = model
    if device.type != "cpu":  # the generator works on the CPU: sample from a copy
        sampler = build_model(spec.model_config)
        sampler.load_state_dict(model.state_dict())
    settings = SamplingSettings(
        max_new_tokens=spec.sample_tokens, seed=spec.seed, top_alternatives=0
    )
    try:
        generator = Generator(sampler, spec.tokenizer, template=spec.template)
        if spec.sample_prompt:
            text = generator.generate("", settings, prompt=spec.sample_prompt)
            return f"[{spec.sample_prompt}] {text}"
        return spec.sample_text + generator.generate(spec.sample_text, settings)
    finally:
        model.train()


class StopSignals:
    """Turns the first Ctrl-C / SIGTERM / SIGHUP (the terminal closed) into a request to stop
    after the current step.

    A second Ctrl-C stops at once (KeyboardInterrupt). Only the main thread can own signal
    handlers; elsewhere (embedded use) the loop simply runs to its end.
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
                if sig is None:  # Windows has no SIGHUP
                    continue
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.received == "SIGINT" and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name


# ---------------------------------------------------------------------------- the loop


def train(spec: RunSpec, console: Console | None = None) -> RunResult:
    """Run (or resume) ``spec`` to its end or until stopped; rank 0 reports and saves."""
    console = console or run_console()
    device = resolve_device(spec.device, distributed.local_rank())
    context = distributed.init_from_env(device.type)
    try:
        result = _Run(spec, context, device, console).run()
        # every rank past its last collective before any takes the group down: once, after a
        # finished run, gloo aborted the rank that got there first (SIGABRT at exit)
        distributed.barrier(context)
        return result
    finally:
        distributed.shutdown(context)


class _Run:
    """The state of one run: model, optimizer, data stream, counters."""

    def __init__(
        self, spec: RunSpec, context: DistContext, device: torch.device, console: Console
    ) -> None:
        self.spec = spec
        self.hp = spec.hp
        self.context = context
        self.device = device
        self.console = console
        self.main = context.is_main
        self.metrics = run_state.MetricsLog(spec.name, enabled=self.main)
        self.best_val: float | None = None
        self.last_eval: EvalResult | None = None
        self.step = 0
        self.tokens_seen = 0
        self.elapsed_before = 0.0
        self.model_saved = False  # this process wrote models/NAME
        self.latest_saved = spec.resume  # runs/NAME/latest holds a state of this run
        self.replaces_leftover = False  # models/NAME is what an unresumable attempt left

    # -- setup

    def _check_name(self) -> None:
        if self.spec.resume:
            return
        name = self.spec.name
        latest, model = run_state.latest_dir(name), paths.model_dir(name)
        if latest.exists():
            raise StoryError(_name_taken_by_a_run(name, latest))
        if not model.exists():
            return
        if not run_state.stopped_before_latest(name):
            raise StoryError(
                f"{model} already exists: pick another --out (or delete it with "
                f"`storytui models rm {name}`)"
            )
        self.replaces_leftover = True

    def _check_memory(self) -> None:
        """Refuse a micro-batch whose scores over the vocabulary alone outgrow the device.

        Each position's scores over the whole vocabulary are held as logits, fp32
        log-probabilities kept for the backward pass and their gradients there: 14-17 bytes
        per score measured (CPU, fp32 and bf16), so 12 is a floor under what one micro-batch
        needs, whatever else it needs besides (4 under torch.compile, which may fuse them).
        A batch over it could only fail, or swap for hours, after a silent wait.
        """
        batch, vocab = self.hp.batch_size, self.spec.model_config.vocab_size
        need = (4 if self.spec.compile else 12) * batch * self.block_size * vocab
        have = device_memory(self.device)
        if have is None or need <= have:
            return
        raise StoryError(
            f"--batch-size {batch:,} is too large: one micro-batch of {batch:,} × "
            f"{self.block_size} tokens needs more than {need / 2**30:,.0f} GiB for its scores "
            f"over the vocabulary alone, and {self.device} has {have / 2**30:,.0f} GiB; use a "
            "smaller --batch-size (and a larger --grad-accum for the same tokens per step)"
        )

    def _build(self) -> dict[str, Any] | None:
        spec = self.spec
        torch.manual_seed(spec.seed)
        self.raw = build_model(spec.model_config)
        state = None
        if spec.init_state is not None:
            load_weights(self.raw, spec.init_state, spec.parent or "parent")
        if spec.resume:
            state = run_state.load_latest(spec.name, self.raw)
            if state.get("world_size", 1) != self.context.world_size:
                raise StoryError(
                    f"run {spec.name} was saved with {state.get('world_size', 1)} processes; "
                    f"resume it with the same number (not {self.context.world_size})"
                )
        self.raw.to(self.device)
        self.raw.train()
        self.model = torch.compile(self.raw) if spec.compile else self.raw
        return state

    def _measure(self, state: dict[str, Any] | None) -> tuple[Precision, str, float]:
        """Pick the precision and time a micro-step (the plan's estimate rests on it)."""
        timings: dict[str, float] = {}

        def measure(precision: Precision) -> float:
            if precision.name not in timings:
                timings[precision.name] = time_micro_step(
                    self.model,
                    self.spec.model_config,
                    self.hp.batch_size,
                    self.block_size,
                    precision,
                    self.device,
                )
            return timings[precision.name]

        if state is not None:
            precision = Precision(state["precision"], self.device.type)
            note = "as saved"
        else:
            precision = resolve_precision(self.hp.dtype, self.device, measure)
            precision = Precision(
                distributed.from_main(precision.name, self.context), self.device.type
            )
            note = "requested" if self.hp.dtype != "auto" else "auto"
            if len(timings) == 2:
                other = "fp32" if precision.name == "bf16" else "bf16"
                ratio = timings[other] / timings[precision.name]
                note = f"auto: {ratio:.2f}x the speed of {other} here"
        return precision, note, measure(precision)

    def _plan(self, precision: Precision, note: str, micro_seconds: float, state) -> Plan:
        hp = self.hp
        step_seconds = micro_seconds * self.accum
        per_eval = hp.eval_batches * micro_seconds / 3  # forward only: ~1/3 of fwd + bwd
        if state is not None:
            steps = int(state["total_steps"])
        else:
            steps = total_steps(hp, self.tokens_per_step)
            if self.spec.time_budget_s:
                per_step = step_seconds + per_eval / hp.eval_every
                steps = max(1, min(steps, int(self.spec.time_budget_s / per_step)))
                steps = int(distributed.from_main(steps, self.context))
        evals = evals_after(self.step, steps, hp.eval_every)
        meta = getattr(self.spec.data, "meta", None)
        train_tokens = _split_tokens(meta, "train")
        warmup = min(hp.warmup_steps, steps // 10) if hp.warmup_steps else 0
        return Plan(
            name=self.spec.name,
            stage=self.spec.stage,
            preset=self.spec.preset,
            recipe=self.spec.recipe,
            vocabulary=self._vocabulary(),
            n_params=sum(p.numel() for p in self.raw.parameters()),
            device=str(self.device),
            world_size=self.context.world_size,
            precision=precision.name,
            precision_note=note,
            compiled=self.spec.compile,
            batch_size=hp.batch_size,
            block_size=self.block_size,
            grad_accum=self.accum,
            tokens_per_step=self.tokens_per_step,
            steps=steps,
            start_step=self.step,
            warmup_steps=warmup,
            lr=hp.lr,
            min_lr=hp.lr * hp.min_lr_ratio,
            step_seconds=step_seconds,
            eval_seconds=evals * per_eval,
            seconds_per_eval=per_eval,
            time_budget_s=self.spec.time_budget_s,
            train_tokens=train_tokens,
        )

    def _restore(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.tokens_seen = int(state["tokens_seen"])
        self.best_val = state.get("best_val_loss")
        self.elapsed_before = float(state.get("elapsed", 0.0))
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.stepper.scaler.load_state_dict(state["scaler"])
        rng = state["rng"][self.context.rank]
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng.get("cuda") is not None:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.data_rng.set_state(rng["data"])

    def _vocabulary(self) -> str:
        tokenizer = self.spec.tokenizer
        return f"{tokenizer.name} ({tokenizer.n_vocab:,} tokens)"

    # -- saving

    def _meta(self, val: EvalResult | None) -> CheckpointMeta:
        spec = self.spec
        return CheckpointMeta(
            model=spec.model_config,
            tokenizer=spec.tokenizer.name,
            tokenizer_hash=spec.tokenizer.hash,
            preset=spec.preset,
            stage=spec.stage,
            parent=spec.parent,
            steps=self.step,
            tokens_seen=self.tokens_seen,
            val_loss=val.loss if val else None,
            val_bpb=val.bpb if val else None,
            template=spec.template,
            extra={
                "run": {
                    "recipe": spec.recipe,
                    "hp": self.hp.to_json(),
                    "seed": spec.seed,
                    "data_fingerprint": spec.data.meta.get("fingerprint"),
                    "options": spec.options,
                    "time_budget_s": spec.time_budget_s,
                    "total_steps": self.total,
                    "precision": self.precision.name,
                }
            },
        )

    def _save_latest(self) -> None:
        """Every rank hands its RNG states to rank 0, which writes ``runs/NAME/latest``."""
        rng = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "data": self.data_rng.get_state(),
        }
        all_rng = distributed.gather(rng, self.context)
        distributed.on_main(lambda: self._write_latest(all_rng), self.context)

    def _write_latest(self, all_rng: list[object]) -> None:
        state = {
            "step": self.step,
            "total_steps": self.total,
            "tokens_seen": self.tokens_seen,
            "best_val_loss": self.best_val,
            "elapsed": self._elapsed(),
            "precision": self.precision.name,
            "world_size": self.context.world_size,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.stepper.scaler.state_dict()
            if self.stepper.scaler.is_enabled()
            else None,
            "rng": all_rng,
        }
        meta, tokenizer = self._meta(self.last_eval), self.spec.tokenizer
        run_state.save_latest(self.spec.name, self.raw, meta, tokenizer, state)
        if not self.latest_saved:
            self.latest_saved = True
            run_state.clear_no_latest(self.spec.name)

    def _save_model(self, val: EvalResult | None) -> None:
        if self.main:
            if not self.latest_saved:  # until latest exists, this run cannot be resumed
                run_state.mark_no_latest(self.spec.name)
            run_state.save_model(self.spec.name, self.raw, self._meta(val), self.spec.tokenizer)
            self.model_saved = True

    def _save_model_if_missing(self, stopped_by: str) -> None:
        """A run stopped early still leaves a model to load (its latest weights)."""
        model_missing = self.replaces_leftover or not paths.model_dir(self.spec.name).exists()
        if stopped_by != "done" and not self.model_saved and model_missing:
            self._save_model(self.last_eval)

    def _failed_save_hint(self, error: run_state.SaveError) -> str:
        """What is left after a failed save, and the command that carries on from there."""
        stage, name = self.spec.stage, self.spec.name
        when = "once there is space" if error.disk_full else "once that is fixed"
        if run_state.latest_dir(name).is_dir():
            return (
                f"the last checkpoint is kept; {when}, continue with "
                f"`storytui train {stage} --out {name} --resume`"
            )
        return (
            f"no resumable state was saved yet; {when}, start the run again with "
            f"`storytui train {stage} --out {name} …`"
        )

    # -- evaluation

    def _evaluate(self) -> None:
        """Rank 0 evaluates, samples and keeps the best model; then every rank saves latest."""
        distributed.on_main(self._evaluate_on_main, self.context)
        self._save_latest()

    def _evaluate_on_main(self) -> None:
        started = time.perf_counter()
        result = evaluate(
            self.model,
            self.spec.data,
            "val",
            self.hp.batch_size,
            self.block_size,
            self.hp.eval_batches,
            self.precision,
            self.device,
            self.byte_lengths,
        )
        sample = generate_sample(self.raw, self.spec) if self.spec.sample_tokens else ""
        self.last_eval = result
        improved = result is None or self.best_val is None or result.loss < self.best_val
        if improved:
            self.best_val = result.loss if result else None
            self._save_model(result)
        row = {"step": self.step, "tokens": self.tokens_seen, "elapsed": self._elapsed()}
        if result:
            row |= {"val_loss": result.loss, "val_bpb": result.bpb}
        self.metrics.write(row | {"sample": sample})
        seconds = time.perf_counter() - started
        if result:
            bpb = f"{result.bpb:.4f}" if result.bpb is not None else "-"
            summary = f"val loss {result.loss:.4f}  bpb {bpb}" + (" (best)" if improved else "")
        else:
            summary = "no validation data"
        self.progress.note(f"eval @ step {self.step:,}: {summary}  [{seconds:.1f}s]")
        if sample:
            self.progress.note(f"  sample: {sample!r}")

    def _elapsed(self) -> float:
        """Training seconds of the whole run, over every session that resumed it."""
        return self.elapsed_before + self._session_seconds()

    def _session_seconds(self) -> float:
        """Training seconds of this process alone: what ``--time-budget`` limits, so that a
        run its budget stopped trains on when it is resumed (a new Colab session, say)."""
        return time.perf_counter() - self.started

    # -- run

    def run(self) -> RunResult:
        try:
            return self._run()
        except run_state.SaveError as exc:
            raise StoryError(f"{exc}; {self._failed_save_hint(exc)}") from exc
        except RuntimeError as exc:  # torch.OutOfMemoryError is one
            if not _out_of_memory(exc):
                raise
            batch = self.hp.batch_size
            raise StoryError(
                f"out of memory on {self.device} with --batch-size {batch:,} "
                f"({batch:,} × {getattr(self, 'block_size', '?')} tokens per micro-batch); use "
                "a smaller --batch-size (and a larger --grad-accum for the same tokens per step)"
            ) from exc

    def _run(self) -> RunResult:
        spec, hp, context = self.spec, self.hp, self.context
        self._check_name()
        self.started = time.perf_counter()
        if self.device.type == "cuda":  # fp32 matmuls (the seed recipe) may use TF32 cores
            torch.set_float32_matmul_precision("high")
        if self.device.type == "cpu":  # a step's activations otherwise page-fault every time
            keep_all_freed_memory()
        state = self._build()
        config = spec.model_config
        self.block_size = min(hp.block_size or config.block_size, config.block_size)
        self.accum = max(1, math.ceil(hp.grad_accum / context.world_size))
        self.tokens_per_step = hp.batch_size * self.block_size * self.accum * context.world_size
        self._check_memory()
        if self.main:  # what is known before the measurement, which may take a while
            if self.replaces_leftover:
                self.console.print(
                    f"note: replacing {paths.model_dir(spec.name)}, left by an earlier run "
                    "that stopped before it saved a resumable state",
                    highlight=False,
                )
            print_plan_head(
                self.console,
                stage=spec.stage,
                name=spec.name,
                preset=spec.preset,
                recipe=spec.recipe,
                vocabulary=self._vocabulary(),
                n_params=sum(p.numel() for p in self.raw.parameters()),
                tokens_per_step=self.tokens_per_step,
                batch_size=hp.batch_size,
                block_size=self.block_size,
                grad_accum=self.accum,
                world_size=context.world_size,
            )
        self.precision, note, micro_seconds = self._measure(state)
        if state is not None:
            self.step = int(state["step"])
        plan = self._plan(self.precision, note, micro_seconds, state)
        self.total = plan.steps
        if self.main:
            print_plan(self.console, plan, head=False)

        self.optimizer = make_optimizer(self.raw, hp, self.device)
        self.stepper = TrainStep(
            distributed.wrap(self.model, context, self.device),
            self.optimizer,
            self.precision,
            self.accum,
            hp.grad_clip,
        )
        rank_seed = (spec.seed + 7919 * context.rank) % SEED_LIMIT  # each process its own order
        self.data_rng = torch.Generator().manual_seed(rank_seed)
        if state is not None:
            self._restore(state)
            self.metrics.truncate_after(self.step)
        else:
            self.metrics.reset()
        self.byte_lengths = torch.as_tensor(spec.tokenizer.token_byte_lengths())
        self.started = time.perf_counter()

        def next_batch():
            return spec.data.get_batch(
                "train", hp.batch_size, self.block_size, self.data_rng, self.device
            )

        flops = flops_per_token(config, plan.n_params, self.block_size)
        peak = peak_flops(self.device)
        stopped_by = "done"
        time_left = TimeLeft(plan.step_seconds, plan.seconds_per_eval, hp.eval_every)
        window_loss, window_steps = None, 0
        window_started, window_tokens = time.perf_counter(), 0
        with (
            StopSignals() as signals,
            TrainProgress(self.console, self.total, self.step, enabled=self.main) as progress,
        ):
            self.progress = progress
            while self.step < self.total:
                lr = lr_at(self.step, hp, self.total)
                loss, grad_norm = self.stepper(next_batch, lr)
                self.step += 1
                self.tokens_seen += self.tokens_per_step
                window_tokens += self.tokens_per_step
                window_loss = loss if window_loss is None else window_loss + loss
                window_steps += 1
                progress.tick(self.step)
                overdue = time.perf_counter() - window_started > LOG_AT_LEAST_EVERY_S
                if self.step % hp.log_every == 0 or self.step == self.total or overdue:
                    mean_loss = float(window_loss) / window_steps
                    if not math.isfinite(mean_loss):
                        raise StoryError(
                            f"the loss became {mean_loss} at step {self.step}; "
                            "try a lower --lr (nothing was saved for this step)"
                        )
                    seconds = time.perf_counter() - window_started
                    rate = window_tokens / seconds if seconds > 0 else 0.0
                    mfu = rate * flops / (peak * context.world_size) if peak else None
                    self.metrics.write(
                        {
                            "step": self.step,
                            "tokens": self.tokens_seen,
                            "loss": mean_loss,
                            "lr": lr,
                            "grad_norm": float(grad_norm),
                            "tokens_per_s": rate,
                            "mfu": mfu,
                            "elapsed": self._elapsed(),
                        }
                    )
                    time_left.add_window(window_tokens // self.tokens_per_step, seconds)
                    eta = time_left.seconds(self.step, self.total)
                    pace = time_left.seconds_per_step
                    progress.update(self.step, mean_loss, lr, rate, mfu, eta, pace)
                    window_loss, window_steps = None, 0
                    window_started, window_tokens = time.perf_counter(), 0
                if self.step % hp.eval_every == 0 or self.step == self.total:
                    eval_started = time.perf_counter()
                    self._evaluate()
                    time_left.add_eval(time.perf_counter() - eval_started)
                    window_started, window_tokens = time.perf_counter(), 0
                code = distributed.max_over_ranks(self._stop_code(signals), context)
                if code:
                    stopped_by = STOP_REASONS[code]
                    break
            if self.step % hp.eval_every and self.step != self.total:
                if stopped_by == "time budget":
                    self._evaluate()  # a budgeted run ends like a finished one
                else:
                    self._save_latest()
            distributed.on_main(lambda: self._save_model_if_missing(stopped_by), context)
        if context.enabled:
            if not distributed.ranks_agree(self.raw, context):
                raise StoryError("the processes ended with different weights; do not use this run")
            if self.main:
                self.console.print(f"All {context.world_size} processes hold identical weights.")
        distributed.barrier(context)
        final = self.last_eval
        return RunResult(
            name=spec.name,
            steps=self.step,
            total_steps=self.total,
            tokens_seen=self.tokens_seen,
            val_loss=final.loss if final else None,
            val_bpb=final.bpb if final else None,
            stopped_by=stopped_by,
            model_dir=paths.model_dir(spec.name),
            latest_dir=run_state.latest_dir(spec.name),
            plan=plan,
        )

    def _stop_code(self, signals: StopSignals) -> int:
        """This rank's reason to stop now, as an index into STOP_REASONS (0 = keep going)."""
        if signals.received:
            return STOP_REASONS.index(signals.received)
        if output_lost(self.console):  # `| head` has read enough: save, then stop
            return STOP_REASONS.index("output closed")
        if self.spec.halt_after_steps is not None and self.step >= self.spec.halt_after_steps:
            return STOP_REASONS.index("halt")
        if self.spec.time_budget_s and self._session_seconds() > self.spec.time_budget_s:
            return STOP_REASONS.index("time budget")
        return 0


def _name_taken_by_a_run(name: str, latest: Path) -> str:
    """Why ``--out NAME`` is refused while ``runs/NAME/latest`` exists, and what to do: a run
    that reached its last step has nothing left to resume, only to delete or keep."""
    from storytui.checkpoint import read_meta

    try:
        meta = read_meta(latest)
        done, total = meta.steps, int(meta.extra["run"]["total_steps"])
    except (StoryError, KeyError, TypeError, ValueError):
        done = total = None  # unreadable: say what --resume itself would find out
    delete = f"delete it with `storytui models rm {name}`"
    if done is not None and done >= total:
        return (
            f"run {name!r} already exists and finished ({done} of {total} steps): pick "
            f"another --out, or {delete}"
        )
    stopped = f" (it stopped at step {done} of {total})" if done is not None else ""
    return (
        f"{latest} already exists{stopped}: add --resume to continue that run, pick another "
        f"--out, or {delete}"
    )


def device_memory(device: torch.device) -> int | None:
    """Bytes of memory a run on ``device`` can have at most, or None when unknown."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "mps":
        recommended = getattr(torch.mps, "recommended_max_memory", None)
        return recommended() if recommended else None
    if device.type != "cpu":
        return None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    try:  # a container's limit (cgroup v2), when it sets one below the machine's memory
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


def _out_of_memory(exc: BaseException) -> bool:
    """A failed allocation: CUDA's OutOfMemoryError, or the CPU and MPS allocators' errors."""
    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    text = str(exc)
    return "out of memory" in text or "can't allocate memory" in text


def _split_tokens(meta: Any, split: str) -> int | None:
    """Token count of a split from the shard metadata, whatever its exact shape."""
    if meta is None:
        return None
    if not isinstance(meta, dict):
        meta = getattr(meta, "__dict__", {})
    splits = meta.get("splits")
    if isinstance(splits, dict) and isinstance(splits.get(split), dict):
        value = splits[split].get("tokens")
        return int(value) if value else None
    value = meta.get(f"{split}_tokens")
    return int(value) if value else None
