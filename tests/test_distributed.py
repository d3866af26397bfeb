"""training/distributed.py without a launch: which rank writes, and a launcher whose process count the
config does not match (the 2-process runs themselves are in tests/test_training.py)."""

from __future__ import annotations

import pytest
import torch.distributed as dist

from anyquantile.experiment.errors import ConfigError
from anyquantile.training.distributed import is_rank_zero, join_launched_group, shared_run_dir

LAUNCH_VARIABLES = ("TORCHELASTIC_RUN_ID", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK")


@pytest.fixture
def torchrun_rank(monkeypatch):
    """The environment torchrun gives rank ``rank`` of 2 on one machine (``torchrun_rank(rank)``)."""

    def launched(rank: int) -> None:
        for name, value in {
            "TORCHELASTIC_RUN_ID": "test",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "GROUP_RANK": "0",
            "WORLD_SIZE": "2",
            "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": "29999",
        }.items():
            monkeypatch.setenv(name, value)

    for name in (*LAUNCH_VARIABLES, "SLURM_NTASKS", "SLURM_PROCID", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    return launched


def test_a_launch_of_another_size_than_the_config_is_refused_before_anyone_waits(torchrun_rank):
    torchrun_rank(0)
    with pytest.raises(ConfigError, match="torchrun started 2 processes, but trainer.devices x trainer.num_nodes is 1"):
        join_launched_group("cpu", 1)
    assert not dist.is_initialized()  # refused before joining: no rank waits for the others


def test_rank_zero_is_the_global_rank_zero(torchrun_rank, monkeypatch):
    assert is_rank_zero()  # a single process
    torchrun_rank(1)
    assert not is_rank_zero()
    torchrun_rank(0)
    monkeypatch.setenv("LOCAL_RANK", "1")  # the local rank alone does not decide: RANK does
    assert is_rank_zero()


def test_without_a_launcher_the_ranks_lightning_starts_inherit_the_folder(torchrun_rank, monkeypatch, tmp_path):
    monkeypatch.setenv("ANYQ_RUN_DIR", "recorded")  # so that monkeypatch restores the variable's absence after
    monkeypatch.delenv("ANYQ_RUN_DIR")
    assert shared_run_dir(tmp_path / "first", joined=False) == tmp_path / "first"  # rank 0 records it
    monkeypatch.setenv("LOCAL_RANK", "1")  # a rank Lightning's launcher started, with rank 0's environment
    assert shared_run_dir(tmp_path / "its-own", joined=False) == tmp_path / "first"
