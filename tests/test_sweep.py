"""The sweep (vibe_jax/sweep.py): the paper-style table, and a real sweep that resumes."""

import csv
import json
import os

import pytest

from helpers import ROOT
from vibe_jax import sweep

# The runlocal schedule (configs/common.set_runlocal) as the sweep's command-line overrides.
SMALL = {
    "train.steps": 40,
    "train.batch_size": 64,
    "baseline.steps": 40,
    "baseline.batch_size": 64,
    "estep.period": 20,
    "report.enabled": False,
    "report.tensorboard": False,
}


def fake_run(directory, acc, baseline_acc=0.9, label_mode="all_to_one", attack="badnets"):
  os.makedirs(directory)
  results = {
      "config": {"dataset": "digits", "attack": attack, "variant": "?"},
      "baseline": {"acc": baseline_acc, "asr": 0.95, "ra": 0.05},
      "vibe": {"acc": acc, "asr": 0.01, "ra": acc - 0.01},
  }
  with open(os.path.join(directory, "results.json"), "w") as f:
    json.dump(results, f)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump({"attack": {"label_mode": label_mode}}, f)


def test_sweep_table_from_results(tmp_path):
  runs = sweep.plan(["/c/digits_badnets.py", "/c/digits_bn_all2all.py"], ["a", "f"], str(tmp_path))
  fake_run(runs[0].workdir, 0.931)
  fake_run(runs[1].workdir, 0.912, baseline_acc=0.8)  # e.g. a Leiden-filtered variant
  fake_run(runs[2].workdir, 0.944, label_mode="all_to_all")  # runs[3] is missing
  md_path, csv_path = sweep.write_tables(runs, ["a", "f"], str(tmp_path))
  with open(csv_path) as f:
    rows = list(csv.DictReader(f))
  assert [r["config"] for r in rows] == ["digits_badnets", "digits_bn_all2all"]
  assert float(rows[0]["a_acc"]) == 0.931 and float(rows[0]["f_acc"]) == 0.912
  assert float(rows[0]["baseline_acc"]) == 0.9 and rows[1]["f_acc"] == ""
  text = open(md_path).read()
  assert "| digits_badnets | badnets | 90.00 | 95.00 | 5.00 | 93.10 | 1.00 | 92.10 | 91.20" in text
  assert "| digits_bn_all2all | badnets (all_to_all) |" in text and "| - | - | - |" in text
  assert "baseline of variant f" in text


@pytest.mark.slow
def test_sweep_runs_resumes_and_tabulates(tmp_path, capsys):
  """Two runs (main.py subprocesses, the sweep's design) on the runlocal schedule, then the
  same sweep again: it skips both and writes the same table."""
  argv = [
      "--configs",
      os.path.join(ROOT, "configs", "digits_badnets.py"),
      "--variants",
      "a,f",
      f"--workdir={tmp_path}",
      "--overrides",
      " ".join(f"--config.{field}={value}" for field, value in SMALL.items()),
  ]
  assert sweep.main(argv) == 0
  assert "[2/2] digits_badnets:f done" in capsys.readouterr().out
  with open(tmp_path / "sweep.csv") as f:
    (row,) = list(csv.DictReader(f))
  table = (tmp_path / "sweep.md").read_text()
  assert row["config"] == "digits_badnets"
  for variant in ("a", "f"):
    results = json.loads((tmp_path / f"digits_badnets_{variant}" / "results.json").read_text())
    config = json.loads((tmp_path / f"digits_badnets_{variant}" / "config.json").read_text())
    assert config["train"]["steps"] == 40 and config["variant"] == variant
    for metric in ("acc", "asr", "ra"):
      assert float(row[f"{variant}_{metric}"]) == results["vibe"][metric]
      assert f"{100 * results['vibe'][metric]:.2f}" in table
  baseline = json.loads((tmp_path / "digits_badnets_a" / "results.json").read_text())["baseline"]
  assert [float(row[f"baseline_{m}"]) for m in ("acc", "asr", "ra")] == [
      baseline[m] for m in ("acc", "asr", "ra")
  ]
  assert sweep.main(argv) == 0
  assert capsys.readouterr().out.count("skipped") == 2
  assert (tmp_path / "sweep.md").read_text() == table
