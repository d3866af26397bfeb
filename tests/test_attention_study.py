"""analysis/attention_study.py --quick of one generator writes every listed file."""
from __future__ import annotations

import json

from analysis import attention_study


def test_quick_study_of_one_generator_writes_every_file(tmp_path, capsys):
    assert attention_study.main(["--generators", "garch", "--quick", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "garch"
    expected = {"training_curves.png", "attention_summary.png", "entropy_analysis.png", "attention_metrics.json", "summary.json"}
    expected |= {f"attention_L{l}_H{h}_S{s}.png" for l in (1, 2) for h in (1, 2, 3, 4) for s in (1, 2)}
    assert {p.name for p in folder.iterdir()} == expected
    for name in expected:
        assert (folder / name).stat().st_size > 0, name
    metrics = json.loads((folder / "attention_metrics.json").read_text())
    assert len(metrics) == 8 and all(0 <= m["entropy"] <= 1 and 0 <= m["diagonal"] <= 1 for m in metrics)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["final_held_out_mse"] > 0 and summary["held_out_windows"] == 64
    assert (tmp_path / "comparison.md").read_text().count("| garch |") == 1 and (tmp_path / "comparison.png").is_file()


def test_unknown_generator_is_refused(tmp_path, capsys):
    assert attention_study.main(["--generators", "brownian", "--out", str(tmp_path)]) == 2
    assert "unknown generator" in capsys.readouterr().err
