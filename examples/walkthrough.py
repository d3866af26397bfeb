"""A notebook-style walk through the Python API: train on a long frame, cross-validate, score with utilsforecast,
draw a fan chart, save the model and forecast with it again.

    python examples/walkthrough.py [--steps 300] [--out walkthrough-out]

It needs nothing but the package: the series are three of the embedded synthetic load series (hourly), taken
as a pandas frame in neuralforecast's long format. Each ``# %%`` cell runs as it is in a notebook.
"""

# %% Imports and options
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")  # files, no window
import matplotlib.pyplot as plt  # noqa: E402
from utilsforecast.evaluation import evaluate  # noqa: E402
from utilsforecast.losses import coverage, mae, mqloss  # noqa: E402

from anyquantile import Forecaster  # noqa: E402
from anyquantile.dataset.synthetic import SyntheticLoad, SyntheticLoadSpec  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--steps", type=int, default=300, help="training steps (300: about a minute on 2 cores)")
parser.add_argument("--out", default="walkthrough-out", help="folder for the chart, the model and the runs")
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

# %% Data: a long frame, one row per series and hour (unique_id, ds, y); gaps would be rows with y = NaN
df = SyntheticLoad(SyntheticLoadSpec(num_series=3, num_hours=24 * 180)).panel.to_long_frame()
print(df.head(3), f"\n{df.unique_id.nunique()} series, {len(df)} rows\n")

# %% A forecaster: a shipped config by name, settings as the command line's key=value
forecaster = Forecaster(
    "nbeatsaq-synthetic",
    overrides=[
        f"trainer.max_steps={args.steps}",
        f"trainer.val_every_n_steps={max(args.steps // 2, 1)}",
        "trainer.precision=32-true",  # fp32 runs everywhere; bf16-mixed is faster only with native bf16
        "dataset.batch_size=256",
        f"output_dir={out / 'runs'}",
    ],
    verbose=False,
)

# %% Cross-validation: fit once up to the first cutoff, then 3 forecasts of 48 hours whose cutoffs are a day apart
levels = [50, 80, 95]
cv = forecaster.cross_validation(df, n_windows=3, step_size=24, level=levels)
print(cv.head(3), "\n")

# %% Score with utilsforecast (neuralforecast's metrics) on the frame as it is
quantiles = {"lo-95": 0.025, "lo-80": 0.1, "median": 0.5, "hi-80": 0.9, "hi-95": 0.975}  # column -> level
quantile_columns = [f"AnyQuantile-{name}" for name in quantiles]
scores = evaluate(
    cv.drop(columns="cutoff").rename(columns={"AnyQuantile-median": "AnyQuantile"}),
    metrics=[mae],
    models=["AnyQuantile"],
)
pinball = mqloss(cv, models={"AnyQuantile": quantile_columns}, quantiles=np.array(list(quantiles.values())))
covered = {level: coverage(cv, models=["AnyQuantile"], level=level)["AnyQuantile"].mean() for level in levels}
print("MAE of the median per series:\n", scores, "\n")
print(f"mean multi-quantile loss: {pinball['AnyQuantile'].mean():.1f}")
print("coverage: " + ", ".join(f"{level} %: {share:.3f}" for level, share in covered.items()), "\n")

# %% A fan chart of one series' last cross-validation window
series = cv.unique_id.iloc[0]
window = cv[(cv.unique_id == series) & (cv.cutoff == cv.cutoff.max())]
history = df[(df.unique_id == series) & (df.ds > window.ds.min() - pd.Timedelta(days=4))]
history = history[history.ds < window.ds.min()]
figure, axis = plt.subplots(figsize=(9, 3.5))
axis.plot(history.ds, history.y, color="black", linewidth=1, label="history")
for level, alpha in zip(sorted(levels, reverse=True), (0.2, 0.35, 0.5)):
    axis.fill_between(
        window.ds,
        window[f"AnyQuantile-lo-{level}"],
        window[f"AnyQuantile-hi-{level}"],
        alpha=alpha,
        color="C0",
        linewidth=0,
        label=f"{level} % interval",
    )
axis.plot(window.ds, window["AnyQuantile-median"], color="C0", label="median")
axis.plot(window.ds, window.y, color="black", linestyle=":", label="actual")
axis.set_title(f"{series}: the last window's forecast")
axis.legend(loc="upper left", fontsize=8)
figure.tight_layout()
chart = out / "fan_chart.png"
figure.savefig(chart, dpi=110)
print(f"fan chart: {chart}")

# %% Save, load, forecast the hours after the data (any levels; quantiles never cross). The model is the one
# cross-validation fitted, on the hours up to its first cutoff; fit(df) would train on all of them.
folder = forecaster.save(out / "model", overwrite=True)
loaded = Forecaster.load(folder)
forecast = loaded.predict(df, quantiles=[0.05, 0.5, 0.95], h=24)
print(f"model saved to {folder}\n", forecast.head(3))
