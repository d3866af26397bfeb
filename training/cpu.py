"""How a training run uses a CPU machine: threads per process, and whether bf16 is native here."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
from omegaconf import DictConfig


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_per_process(cfg: DictConfig, cores: int | None = None) -> int | None:
    """torch's intra-op threads for each training process, or None to keep torch's default.

    ``trainer.num_threads`` when given. Otherwise, with several CPU processes (DDP ranks, ``trainer.devices``
    > 1) the cores are split between them: when every rank takes every core, their OpenMP threads spin
    waiting for each other and a run goes many times slower (measured in docs/results.md).
    """
    if cfg.trainer.num_threads:
        return int(cfg.trainer.num_threads)
    if cfg.trainer.accelerator == "cpu" and cfg.trainer.devices > 1:
        return max(1, (cores or available_cores()) // cfg.trainer.devices)
    return None


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Within the block, torch's intra-op threads are ``threads`` (None: as they are) and ``OMP_NUM_THREADS``
    says the same: Lightning's DDP launcher reads it (unset, it would reset the threads to cores ÷ processes,
    overriding ``trainer.num_threads``) and the processes it starts inherit it. Both are restored after."""
    if not threads:
        yield
        return
    previous, previous_variable = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        if previous_variable is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous_variable


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX-512 BF16 or AMX); without it torch emulates
    them, many times slower than fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)
