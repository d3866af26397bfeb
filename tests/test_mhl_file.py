"""The real MHL file, when it is beside the repository (as in CI): it loads and splits as documented, and every
MHL config runs on it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from anyquantile.dataset.loader import load_hourly_panel
from anyquantile.experiment.builders import build_data
from anyquantile.experiment.config import load_config
from anyquantile.training.train import train

REPO = Path(__file__).resolve().parents[1]
MHL = REPO.parent / "shared" / "data" / "mhl" / "mhl_2016_2017.csv.gz"

pytestmark = pytest.mark.skipif(not MHL.is_file(), reason="the MHL file is not beside the repository")


def test_mhl_loads_with_its_gaps():
    panel = load_hourly_panel(MHL, min_length=216)
    assert panel.num_series == 35 and panel.num_hours == 17_544
    missing = dict(zip(panel.series_ids, np.isnan(panel.values).sum(axis=1)))
    assert missing["AL"] == 8_783  # no data for 2016 (see the data README)
    assert missing["DE"] == 0


def test_mhl_cpu_config_splits():
    cfg = load_config(REPO / "config" / "nbeatsaq-mhl-cpu.yaml", [f"dataset.path={MHL}"])
    data = build_data(cfg)
    assert set(data.splits) == {"train", "val"}  # 2018 is held back: no test split by default
    val = data.splits["val"]
    first_val_hour = data.panel.hour_index("2017-07-01")
    assert val.origin.min() == first_val_hour and (val.origin % 24 == first_val_hour % 24).all()
    train_targets_end = data.splits["train"].origin.max() + cfg.dataset.horizon
    assert train_targets_end <= first_val_hour
    # AL's 2016 is empty, so its first windows only start once half of a history is observed.
    al = data.panel.series_ids.index("AL")
    first_al_origin = data.splits["train"].origin[data.splits["train"].series == al].min()
    first_observed = int(np.isfinite(data.panel.values[al]).argmax())  # 2016-12-31 23:00
    assert first_al_origin == first_observed + cfg.dataset.history_length // 2


@pytest.mark.parametrize(
    "name",
    [
        "nbeatsaq-mhl-cpu",
        "nbeatsaq-readout-mhl-cpu",
        "nbeatsaq-adaptive-attention-mhl-cpu",
        "nbeatsaq-adaptive-attention-mhlv",
    ],
)
def test_fast_dev_run_of_each_mhl_config(name, tmp_path):
    # The shipped model sizes on the real file, on CPU; a small batch keeps one step of the
    # paper-size models to seconds.
    overrides = [
        f"dataset.path={MHL}",
        "trainer=cpu",
        "dataset.batch_size=32",
        "dataset.eval_batch_size=32",
        f"output_dir={tmp_path}",
    ]
    summary = train(load_config(REPO / "config" / f"{name}.yaml", overrides), fast_dev_run=True)
    assert summary["global_step"] == 1 and math.isfinite(summary["model"]["crps"])
