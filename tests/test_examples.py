"""The examples run as documented (with fewer training steps)."""

from __future__ import annotations

import subprocess
import sys


def test_the_walkthrough_trains_scores_with_utilsforecast_draws_and_saves(repo, tmp_path):
    done = subprocess.run(
        [sys.executable, str(repo / "examples" / "walkthrough.py"), "--steps", "5", "--out", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "coverage: 50 %" in done.stdout and "mean multi-quantile loss" in done.stdout
    assert (tmp_path / "fan_chart.png").stat().st_size > 10_000
    assert (tmp_path / "model" / "model.json").is_file()


def test_the_readme_api_example_runs(repo, tmp_path):
    readme = (repo / "README.md").read_text()
    code = readme.split("## Python API")[1].split("```python\n")[1].split("```")[0]
    assert "trainer.max_steps=200" in code
    code = code.replace("trainer.max_steps=200", "trainer.max_steps=5")  # the same path, in seconds
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "AnyQuantile-lo-95" in done.stdout and "(96, 5)" in done.stdout
    assert "['unique_id', 'ds', 'AnyQuantile_ql0.1', 'AnyQuantile_ql0.37']" in done.stdout
