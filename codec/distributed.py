"""Several processes under torchrun (`codec train`, `codec tokenize`): rank, world size, device, and the
process group (gloo on the CPU, nccl on CUDA)."""
from __future__ import annotations

import os
from datetime import timedelta

import torch


def pick_device(want: str) -> str:
    """cpu, cuda or auto (cuda when available) -> cpu or cuda; cuda without a CUDA device is an error."""
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise ValueError("device is cuda but no CUDA device is available")
    if want not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu, cuda or auto, got {want!r}")
    return want


def start(device: str = "cpu", timeout: timedelta | None = None) -> tuple[int, int, torch.device]:
    """(rank, world size, this process's device) from torchrun's environment, starting the process group
    when there are several processes; (0, 1, device) for a single one. device: cpu, cuda or auto."""
    kind = pick_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, torch.device(kind)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if kind == "cuda" else "gloo",
                                             **({"timeout": timeout} if timeout else {}))
    here = torch.device(f"cuda:{local}") if kind == "cuda" else torch.device("cpu")
    if here.type == "cuda":
        torch.cuda.set_device(here)
    return torch.distributed.get_rank(), torch.distributed.get_world_size(), here


def barrier() -> None:
    """Wait for every process (nothing to wait for in a single one)."""
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def stop() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
