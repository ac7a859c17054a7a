"""Data-parallel training under ``torchrun``: the few helpers the loop needs, no-ops alone.

``torchrun --nproc_per_node=N`` sets RANK / WORLD_SIZE / LOCAL_RANK; the same command without it
runs as one process and every helper here degrades to the obvious single-process answer. CUDA
ranks talk over NCCL, CPU ranks over gloo.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from storytui.errors import StoryError

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Who this process is among the ranks of one training run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints, evaluates and writes checkpoints."""
        return self.rank == 0


SINGLE = DistContext()


def local_rank() -> int:
    """This process's card on its machine under torchrun (0 when run alone)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_env(device_type: str) -> DistContext:
    """Join the process group described by torchrun's environment (or run alone)."""
    if not launched_by_torchrun():
        return SINGLE
    context = DistContext(
        rank=int(os.environ["RANK"]),
        local_rank=local_rank(),
        world_size=int(os.environ["WORLD_SIZE"]),
    )
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(context.local_rank)
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return context


def shutdown(context: DistContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, context: DistContext, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when there are several ranks."""
    if not context.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


@contextlib.contextmanager
def maybe_no_sync(model: nn.Module, skip_sync: bool) -> Iterator[None]:
    """Skip DDP's gradient all-reduce on micro-batches that are not the last of a step."""
    if skip_sync and hasattr(model, "no_sync"):
        with model.no_sync():
            yield
    else:
        yield


def max_over_ranks(value: int, context: DistContext) -> int:
    """The largest ``value`` of all ranks, on every rank (one small all-reduce per call).

    The loop uses it each step so that all ranks agree on whether, and why, to stop.
    """
    if not context.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def from_main(obj: object, context: DistContext) -> object:
    """Rank 0's ``obj`` on every rank: decisions made from timings must be the same everywhere."""
    return gather(obj, context)[0]


def gather(obj: object, context: DistContext) -> list[object]:
    """Every rank's ``obj`` in rank order (each rank gets the full list)."""
    if not context.enabled:
        return [obj]
    objects: list[object] = [None] * context.world_size
    dist.all_gather_object(objects, obj)
    return objects


def on_main(work: Callable[[], T], context: DistContext) -> T | None:
    """Run ``work`` on rank 0 alone (it writes the checkpoints); if it fails there, every rank
    stops with it, rather than waiting in the next collective for a rank that has left.

    Rank 0 raises its own error (the message the writer reads); the others raise one line that
    points to it. Costs one small gather per call.
    """
    failure: BaseException | None = None
    result: T | None = None
    if context.is_main:
        try:
            result = work()
        except BaseException as exc:
            failure = exc
    reason = str(failure) or type(failure).__name__ if failure is not None else None
    if context.enabled:
        reason = from_main(reason, context)
    if failure is not None:
        raise failure
    if reason is not None:
        raise StoryError(f"rank {context.rank}: stopped because rank 0 failed (see its message)")
    return result


def barrier(context: DistContext) -> None:
    if context.enabled:
        dist.barrier()


def weights_fingerprint(model: nn.Module) -> str:
    """A hash of every parameter's bytes: equal on all ranks unless they have drifted apart."""
    import hashlib

    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def ranks_agree(model: nn.Module, context: DistContext) -> bool:
    """True when every rank holds bit-identical weights (checked once, at the end of a run)."""
    if not context.enabled:
        return True
    return len(set(gather(weights_fingerprint(model), context))) == 1
