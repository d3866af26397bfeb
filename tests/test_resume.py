"""Exact resume: a run killed with SIGKILL and resumed with ``--resume last`` ends bit-identical to the
run left alone (weights, optimiser, schedule, sampler, loop counters, scores); the pieces that make it so
(batch order position, random states, atomic checkpoint files) one by one."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from anyquantile.dataset.datamodule import IndexBatchSampler
from anyquantile.experiment.files import atomic_path, write_text_atomic
from anyquantile.training.resume import AtomicCheckpointIO, random_states, set_random_states

# 3,024 training windows in batches of 256: 12 batches an epoch
RESUMABLE = (
    "dataset.synthetic.num_series=2",
    "dataset.synthetic.num_hours=2880",
    "dataset.val_start=2015-03-15",
    "dataset.test_start=2015-04-10",
    "dataset.batch_size=256",
    "dataset.eval_batch_size=256",
    "model.num_blocks=2",
    "model.width=16",
    "optimizer.warmup_steps=2",
    "trainer.precision=32-true",
    "trainer.val_every_n_steps=10",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
    "evaluation.residual_window=168",
    "evaluation.paper_protocol_levels=0",
    "sampler=adaptive",
    "sampler.levels_per_sample=4",
)
ATTENTION = (
    "model.architecture=adaptive_attention",
    "model.conditioning=out",
    "model.attention.d_model=16",
    "model.attention.dropout=0.1",  # dropout draws from torch's generator in every step
    "model.attention.bias=scheduled",
    "model.attention.bias_schedule_steps=16",
)
CASES = {
    # killed after step 17, resumed from the resume point of step 14: epoch 1, after its 2nd batch
    "mid-epoch": ("config/nbeatsaq-synthetic.yaml", 17, ("trainer.max_steps=20", "trainer.checkpoint_every_n_steps=7")),
    # killed after step 11, resumed from step 10, saved after its validation: the only one, so the best
    # (a resume point saved before it would resume past it, and then test the final weights)
    "at a validation": (
        "config/nbeatsaq-synthetic.yaml",
        11,
        ("trainer.max_steps=11", "trainer.checkpoint_every_n_steps=10"),
    ),
    # killed after step 14, resumed from step 12: the end of epoch 0, just after a validation at 10
    "epoch-end, attention": (
        "config/nbeatsaq-synthetic.yaml",
        14,
        ("trainer.max_steps=16", "trainer.checkpoint_every_n_steps=12", *ATTENTION),
    ),
}


def run(repo: Path, args: list[str]) -> subprocess.CompletedProcess:
    # one thread in every run: the same thread count gives the same float sums, and two runs side by
    # side (the suite beside another job) do not fight over the cores
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    return subprocess.run(
        [sys.executable, *args], cwd=repo, capture_output=True, text=True, timeout=600, env=environment
    )


def train_command(config: str, out: Path, overrides: tuple[str, ...], *extra: str) -> list[str]:
    return ["-m", "anyquantile.cli", "train", "--config", config, *extra, *RESUMABLE, *overrides, f"output_dir={out}"]


def final_checkpoint(out: Path) -> dict:
    (path,) = out.glob("*/*/checkpoints/last.ckpt")
    return torch.load(path, map_location="cpu", weights_only=True)


def test_a_finished_run_trained_further_equals_one_run_to_the_larger_budget(repo, tmp_path):
    """max_steps=10 stops in epoch 0 (12 batches); resumed with max_steps=20 it goes on in that epoch's order:
    the weights, optimiser and schedule of one run to 20. (The sampler's history differs by the snapshot the
    first call took where it stopped, at step 10.)"""
    alone = run(repo, train_command("config/nbeatsaq-synthetic.yaml", tmp_path / "alone", ("trainer.max_steps=20",)))
    assert alone.returncode == 0, alone.stderr[-3000:]
    staged = tmp_path / "staged"
    first = run(repo, train_command("config/nbeatsaq-synthetic.yaml", staged, ("trainer.max_steps=10",)))
    assert first.returncode == 0, first.stderr[-3000:]
    further = run(
        repo, train_command("config/nbeatsaq-synthetic.yaml", staged, ("trainer.max_steps=20",), "--resume", "last")
    )
    assert further.returncode == 0, further.stderr[-3000:]
    expected, got = final_checkpoint(tmp_path / "alone"), final_checkpoint(staged)
    history = "level_sampler._extra_state"
    assert_same(
        {k: v for k, v in expected["state_dict"].items() if k != history},
        {k: v for k, v in got["state_dict"].items() if k != history},
    )
    for part in ("optimizer_states", "lr_schedulers", "global_step"):
        assert_same(expected[part], got[part], part)
    steps = [snapshot["step"] for snapshot in got["state_dict"][history]["history"]]
    assert steps == [10, 12, 20] and [s["step"] for s in expected["state_dict"][history]["history"]] == [12, 20]


def loop_counters(checkpoint: dict) -> dict:
    """Lightning's loop state, less the epoch loop's "ready" and "started" counts: after a resume from
    an epoch's last step, Lightning goes on to the next epoch without counting it ready and started
    (nor calling ``on_train_epoch_start``, which nothing here uses); "processed" and "completed", from
    which it reads the current epoch, agree."""
    loops = {key: value for key, value in checkpoint["loops"]["fit_loop"].items() if key != "epoch_progress"}
    epochs = checkpoint["loops"]["fit_loop"]["epoch_progress"]
    for scope in ("total", "current"):
        loops[f"epochs {scope}"] = {key: epochs[scope][key] for key in ("processed", "completed")}
    return loops


def assert_same(left, right, where: str = "checkpoint") -> None:
    """Equal, tensors bit for bit (torch.equal), recursively through dicts and lists."""
    if isinstance(left, torch.Tensor):
        assert isinstance(right, torch.Tensor) and left.dtype == right.dtype and torch.equal(left, right), where
    elif isinstance(left, dict):
        assert set(left) == set(right), where
        for key in left:
            assert_same(left[key], right[key], f"{where}[{key!r}]")
    elif isinstance(left, (list, tuple)):
        assert len(left) == len(right), where
        for index, (a, b) in enumerate(zip(left, right)):
            assert_same(a, b, f"{where}[{index}]")
    else:
        assert left == right, where


@pytest.mark.parametrize("case", CASES)
def test_a_run_killed_and_resumed_ends_bit_identical_to_the_run_left_alone(repo, tmp_path, case):
    config, kill_after, overrides = CASES[case]
    alone = run(repo, train_command(config, tmp_path / "alone", overrides))
    assert alone.returncode == 0, alone.stderr[-3000:]

    crashed = tmp_path / "crashed"
    script = str(Path(__file__).with_name("killed_run.py"))
    killed = run(repo, [script, str(kill_after), config, *RESUMABLE, *overrides, f"output_dir={crashed}"])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (folder,) = crashed.glob("*/*")
    assert not (folder / "metrics.json").exists()  # it died in training
    resumed = run(repo, train_command(config, crashed, overrides, "--resume", "last"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr and "other batches" not in resumed.stderr

    expected, got = final_checkpoint(tmp_path / "alone"), final_checkpoint(crashed)
    assert got["global_step"] == expected["global_step"] == int(overrides[0].split("=")[1])
    # the weights and the sampler's buffers and history, the optimiser's moments, the schedule, the loops
    for part in ("state_dict", "optimizer_states", "lr_schedulers", "epoch"):
        assert_same(expected[part], got[part], part)
    assert_same(loop_counters(expected), loop_counters(got), "loops")
    assert expected["state_dict"]["level_sampler.bin_count"].sum() > 0
    # and what was tested and scored from it
    scores = [json.loads(next(out.glob("*/*/metrics.json")).read_text()) for out in (tmp_path / "alone", crashed)]
    assert scores[0]["best_step"] == scores[1]["best_step"] and scores[0]["best_val_crps"] == scores[1]["best_val_crps"]
    assert [path.name for path in (tmp_path / "alone").glob("*/*/checkpoints/best-*.ckpt")] == [
        path.name for path in crashed.glob("*/*/checkpoints/best-*.ckpt")
    ]
    assert scores[0]["model"] == scores[1]["model"]
    assert scores[1]["train_steps"] < scores[1]["global_step"]  # the resumed call ran only the steps after the point


class Steps:
    """The trainer's step counter as a sampler reads it: one step per batch trained."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def __call__(self) -> int:
        return self.value


def train_batches(sampler: IndexBatchSampler, steps: Steps, until: int) -> list[list[int]]:
    """Pass after pass, as Lightning's epochs do, one step per batch, up to step ``until``."""
    trained = []
    while steps.value < until:
        for batch in sampler:
            trained.append(batch.tolist())
            steps.value += 1
            if steps.value == until:  # max_steps: training stops in mid-epoch
                break
    return trained


@pytest.mark.parametrize("world_size", [1, 2])
@pytest.mark.parametrize("step", [0, 1, 4, 5, 6, 11])
def test_a_sampler_resumed_at_step_s_gives_the_batches_after_the_s_first(step, world_size):
    """5 batches an epoch per rank at one rank, 2 at two: steps that fall inside an epoch and on its end."""
    for rank in range(world_size):
        steps = Steps()
        alone = train_batches(IndexBatchSampler(23, 4, True, 3, rank, world_size, steps), steps, 16)
        resumed_steps = Steps(step)
        resumed = IndexBatchSampler(23, 4, True, 3, rank, world_size, resumed_steps)
        assert train_batches(resumed, resumed_steps, 16) == alone[step:]
        # the order of each epoch is the one set_epoch(e) gives without a step counter
        plain = IndexBatchSampler(23, 4, True, seed=3, rank=rank, world_size=world_size)
        by_epoch = []
        for epoch in range(16 // len(plain) + 1):
            plain.set_epoch(epoch)
            by_epoch += [batch.tolist() for batch in plain]
        assert alone == by_epoch[:16]


def test_a_run_stopped_at_max_steps_in_mid_epoch_goes_on_with_the_same_order():
    """Training to step 7 (epoch 1, after 2 of its 5 batches), then on to 13 as a new call: the batches of one
    run to 13. A new pass reads the step when it starts, whatever epoch Lightning counts (set_epoch)."""
    steps = Steps()
    sampler = IndexBatchSampler(20, 4, shuffle=True, seed=0, steps_taken=steps)
    first = train_batches(sampler, steps, 7)
    sampler.set_epoch(2)  # Lightning counts the cut epoch completed: the next pass is its epoch 2
    then = train_batches(sampler, steps, 13)
    steps_alone = Steps()
    assert first + then == train_batches(
        IndexBatchSampler(20, 4, True, seed=0, steps_taken=steps_alone), steps_alone, 13
    )


def test_random_states_survive_a_weights_only_checkpoint_and_continue_every_generator(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    torch.rand(5), np.random.randn(3), random.random()  # noqa: B018 — move every generator off its seed
    torch.save(random_states(), tmp_path / "states.pt")
    expected = (torch.rand(4), np.random.randn(4), np.random.standard_normal(), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    set_random_states(torch.load(tmp_path / "states.pt", weights_only=True))
    got = (torch.rand(4), np.random.randn(4), np.random.standard_normal(), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2:] == expected[2:]


def test_an_interrupted_write_leaves_the_previous_file_intact(tmp_path):
    target = tmp_path / "metrics.json"
    write_text_atomic(target, '{"crps": 1.0}')
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as staging:
            staging.write_text('{"crps": 2.')  # half of the new content, then the process is interrupted
            raise KeyboardInterrupt
    assert target.read_text() == '{"crps": 1.0}'
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left behind
    write_text_atomic(target, '{"crps": 2.0}')
    assert target.read_text() == '{"crps": 2.0}'


def test_an_atomic_file_gets_the_usual_permissions_or_keeps_those_it_replaces(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    target = write_text_atomic(tmp_path / "config.yaml", "a: 1")
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it, not mkstemp's 0600
    target.chmod(0o640)
    write_text_atomic(target, "a: 2")
    assert target.stat().st_mode & 0o777 == 0o640


def test_a_checkpoint_whose_writing_fails_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1, "weight": torch.ones(3)}, path)

    def torn_save(checkpoint, file, *args, **kwargs):
        Path(file).write_bytes(pickle.dumps(checkpoint)[:10])  # a few bytes reach the file, then the write fails
        raise OSError("disk full")

    monkeypatch.setattr("lightning.fabric.plugins.io.torch_io._atomic_save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"global_step": 2, "weight": torch.zeros(3)}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert [file.name for file in tmp_path.iterdir()] == ["last.ckpt"]
