"""Several processes, one run: which rank writes, the one run folder they share, the process group's life.

Three ways to start ranks, one code path (docs/scale-out.md):

- Lightning's own launcher (``trainer.devices > 1``, a single command): it starts ranks 1.. by running
  the command again; they inherit rank 0's run folder through the environment (``RUN_DIR_VARIABLE``).
- ``torchrun`` (one node or ``--nnodes``) and SLURM's ``srun``: every rank is started by the launcher.
  :func:`join_launched_group` joins the process group before anything is written, with the address
  and ranks Lightning's own cluster environments read, so that rank 0's run folder is broadcast
  to the others (on other nodes too, with no shared environment); Lightning then trains in that group.

In every case only global rank 0 writes files.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
from lightning.fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment, TorchElasticEnvironment

from anyquantile.experiment.errors import ConfigError

RUN_DIR_VARIABLE = "ANYQ_RUN_DIR"  # the run folder chosen by rank 0, inherited by the ranks Lightning starts


def group_is_up() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_rank_zero() -> bool:
    """This process is global rank 0 (or the only one): the one that writes files.

    Before the group is up: ``RANK`` is set by torchrun, ``SLURM_PROCID`` by srun; Lightning's launcher
    sets ``LOCAL_RANK`` in the processes it starts (and the user ``NODE_RANK`` on each node).
    """
    if group_is_up():
        return dist.get_rank() == 0
    for variable in ("RANK", "SLURM_PROCID"):
        if variable in os.environ:
            return os.environ[variable] == "0"
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def launcher_environment() -> ClusterEnvironment | None:
    """The external launcher that started this process with other ranks (torchrun, srun), or None."""
    for environment in (TorchElasticEnvironment, SLURMEnvironment):
        if environment.detect():
            found = environment()
            if found.world_size() > 1:
                return found
    return None


def join_launched_group(accelerator: str, ranks: int) -> bool:
    """Join the process group of an external launcher's ranks now (True), or do nothing (False).

    Lightning would join it when fit starts, after the run folder is chosen; joined here, rank 0's
    folder can be shared first (:func:`shared_run_dir`). Lightning finds the group up and uses it.
    The backend is Lightning's choice too: NCCL on GPUs, gloo on CPUs. The launcher must have started
    the config's ``ranks`` (``trainer.devices`` x ``trainer.num_nodes``) processes: anything else is a
    ConfigError here, before any rank waits for others that will never come.
    """
    environment = launcher_environment()
    if environment is None or group_is_up():
        return False
    if environment.world_size() != ranks:
        launcher = "torchrun" if isinstance(environment, TorchElasticEnvironment) else "SLURM"
        raise ConfigError(
            f"{launcher} started {environment.world_size()} processes, but trainer.devices x trainer.num_nodes is "
            f"{ranks}: set them to match (e.g. trainer.devices={environment.world_size()} on one machine)"
        )
    os.environ["MASTER_ADDR"] = environment.main_address
    os.environ["MASTER_PORT"] = str(environment.main_port)
    backend = "gloo"
    if accelerator in ("gpu", "cuda") and torch.cuda.is_available():
        backend = "nccl"
        torch.cuda.set_device(environment.local_rank())  # a collective on NCCL runs on this rank's device
    dist.init_process_group(backend, rank=environment.global_rank(), world_size=environment.world_size())
    return True


def shared_run_dir(chosen: Path, joined: bool) -> Path:
    """Rank 0's run folder on every rank: broadcast through the group this run joined (``joined``:
    :func:`join_launched_group`), else inherited from the environment (the ranks Lightning's launcher
    starts), else ``chosen`` (a single process)."""
    if joined:
        shared = [str(chosen)]
        dist.broadcast_object_list(shared, src=0)
        return Path(shared[0])
    if RUN_DIR_VARIABLE in os.environ and not is_rank_zero():
        return Path(os.environ[RUN_DIR_VARIABLE])
    os.environ[RUN_DIR_VARIABLE] = str(chosen)
    return chosen


def end_process_group() -> None:
    """Destroy the DDP process group, now rather than at interpreter exit.

    Lightning destroys it at exit only for NCCL; a gloo group left to the interpreter's teardown has
    its threads destroyed while still joinable, and the process aborts ("terminate called without
    an active exception") after a successful run, more often when the machine is busy.
    """
    if group_is_up():
        dist.destroy_process_group()
