"""The sweep (vibe_jax/sweep.py): the paper-style table, the seed and rate axes with mean +-
std, DER / RIR and BackdoorBench's long-form rows, and a real sweep that resumes."""

import csv
import json
import os
import subprocess

import numpy as np
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
  md_path, csv_path, _ = sweep.write_tables(runs, ["a", "f"], str(tmp_path))
  with open(csv_path) as f:
    rows = list(csv.DictReader(f))
  assert [r["config"] for r in rows] == ["digits_badnets", "digits_bn_all2all"]
  assert float(rows[0]["a_acc"]) == 0.931 and float(rows[0]["f_acc"]) == 0.912
  assert float(rows[0]["baseline_acc"]) == 0.9 and rows[1]["f_acc"] == ""
  text = open(md_path).read()
  assert "| digits_badnets | badnets | 90.00 | 95.00 | 5.00 | 93.10 | 1.00 | 92.10 | 91.20" in text
  assert "| digits_bn_all2all | badnets (all_to_all) |" in text and "| - | - | - |" in text
  assert "baseline of variant f" in text
  assert "| baseline |" in text  # DER / RIR against the baseline head: no victim in these runs


def fake_main(victim=True):
  """Stands in for `python main.py ...`: a results.json whose VIBE ACC is 0.8 + seed / 100
  and whose ASR is the --config.attack.rate it was given, with a deep victim or without."""

  def run(command, cwd, stdout, stderr, check):
    value = lambda flag, default: next(
        (float(a.split("=", 1)[1]) for a in command if a.startswith(flag)), default
    )
    workdir = next(a.split("=", 1)[1] for a in command if a.startswith("--workdir="))
    seed, rate = value("--config.seed=", 0), value("--config.attack.rate=", 0.1)
    assert value("--config.attack.seed=", 0) == seed
    results = {
        "config": {"dataset": "digits", "attack": "badnets", "variant": "a"},
        "baseline": {"acc": 0.85, "asr": 0.9, "ra": 0.1},
        "vibe": {"acc": 0.8 + seed / 100, "asr": rate, "ra": 0.7},
    }
    if victim:
      results["victim"] = {"acc": 0.9, "asr": 0.95, "ra": 0.04}
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      json.dump({"attack": {"rate": rate}, "features": {"extractor": "pixels"}}, f)
    return subprocess.CompletedProcess(command, 0)

  return run


def test_seed_and_rate_axes_aggregate_with_der_and_rir(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(sweep.subprocess, "run", fake_main())
  config = os.path.join(ROOT, "configs", "digits_badnets.py")
  argv = ["--configs", config, "--variants", "a", "--seeds", "0,1,2", f"--workdir={tmp_path}"]
  assert sweep.main([*argv, "--rates"]) == 0  # --rates alone: BackdoorBench's five
  assert "15 runs (1 configs x variants a x seeds 0,1,2 x rates 0.1,0.05,0.01,0.005,0.001)" in (
      capsys.readouterr().out
  )
  assert os.path.isdir(tmp_path / "digits_badnets_a_seed2_rate0.005")
  with open(tmp_path / "sweep.csv") as f:
    rows = list(csv.DictReader(f))
  assert [float(r["rate"]) for r in rows] == [0.1, 0.05, 0.01, 0.005, 0.001]
  row = rows[0]
  assert row["seeds"] == "3" and row["reference"] == "victim"
  accs = [0.80, 0.81, 0.82]
  assert float(row["a_acc"]) == pytest.approx(np.mean(accs))
  assert float(row["a_acc_std"]) == pytest.approx(np.std(accs, ddof=1))
  # DER = [max(0, .95 - .1) - max(0, .9 - acc) + 1] / 2; RIR = [max(0, .7 - .04) - max(0, .9 - acc) + 1] / 2
  assert float(row["a_der"]) == pytest.approx(np.mean([(0.85 - (0.9 - a) + 1) / 2 for a in accs]))
  assert float(row["a_rir"]) == pytest.approx(np.mean([(0.66 - (0.9 - a) + 1) / 2 for a in accs]))
  assert float(row["victim_asr"]) == pytest.approx(0.95)
  assert float(row["victim_asr_std"]) == pytest.approx(0.0)
  table = (tmp_path / "sweep.md").read_text()
  assert "| digits_badnets | badnets | 10 % | 90.00 ± 0.00 | 95.00 ± 0.00 |" in table
  assert "81.00 ± 1.00" in table and "seeds 0, 1, 2" in table

  with open(tmp_path / "backdoorbench.csv") as f:
    reader = csv.DictReader(f)
    leaderboard = list(reader)
  assert tuple(reader.fieldnames) == sweep.BACKDOORBENCH_COLUMNS
  assert len(leaderboard) == 10  # per rate: the undefended victim and VIBE (a)
  victim, vibe = leaderboard[:2]
  assert (victim["defense_name"], victim["der"]) == ("no_defense", "")
  assert float(victim["test_acc"]) == pytest.approx(0.9)
  assert vibe["defense_name"] == "vibe_a" and vibe["backbone"] == "pixels"
  assert (vibe["dataset"], vibe["attack_name"], float(vibe["ratio"])) == ("digits", "badnets", 0.1)
  assert float(vibe["der"]) == pytest.approx(float(row["a_der"]))
  assert float(leaderboard[-1]["test_asr"]) == pytest.approx(0.001)


def test_der_and_rir_fall_back_to_the_baseline_and_say_so(tmp_path, monkeypatch):
  monkeypatch.setattr(sweep.subprocess, "run", fake_main(victim=False))
  config = os.path.join(ROOT, "configs", "digits_badnets.py")
  assert sweep.main(["--configs", config, f"--workdir={tmp_path}", "--rates", "0.2"]) == 0
  with open(tmp_path / "sweep.csv") as f:
    (row,) = list(csv.DictReader(f))
  assert row["reference"] == "baseline" and row["victim_acc"] == "" and row["a_der_std"] == ""
  assert float(row["a_der"]) == pytest.approx((0.9 - 0.2 - 0.05 + 1) / 2)
  with open(tmp_path / "backdoorbench.csv") as f:
    assert [r["defense_name"] for r in csv.DictReader(f)] == ["vibe_a"]


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--rates", "10,5"], "must lie in (0, 1): a fraction"),
        (["--seeds", "0,x"], "--seeds '0,x': expected comma-separated ints"),
        (["--rates", "--overrides=--config.attack.rate=0.2"], "clash with --seeds / --rates"),
    ],
)
def test_axis_errors_are_one_line(tmp_path, capsys, args, expected):
  config = os.path.join(ROOT, "configs", "digits_badnets.py")
  with pytest.raises(SystemExit) as exit_:
    sweep.main(["--configs", config, f"--workdir={tmp_path}", *args])
  assert exit_.value.code == 2 and expected in capsys.readouterr().err


@pytest.mark.slow
def test_sweep_runs_resumes_and_tabulates(tmp_path, capsys):
  """Two runs (main.py subprocesses, the sweep's design) on the runlocal schedule, then the
  same sweep again: it skips both and writes the same table; then one pair with another
  attack rate: it trains again, with that rate."""
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
  # Other overrides (a rate of 0.2) for variant a: main.py really runs it again with them.
  argv[argv.index("a,f")] = "a"
  argv[-1] += " --config.attack.rate=0.2"
  assert sweep.main(argv) == 0
  output = capsys.readouterr().out
  assert "starting over" in output and "skipped" not in output
  config = json.loads((tmp_path / "digits_badnets_a" / "config.json").read_text())
  assert config["attack"]["rate"] == 0.2
