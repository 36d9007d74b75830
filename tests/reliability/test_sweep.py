"""The sweep stores each pair's overrides and reruns a pair whose overrides changed (its old
contents moved aside, not deleted); the same overrides skip a finished pair."""

from __future__ import annotations

import json
import os
import subprocess

from vibe_jax import sweep

from . import digits


def fake_main(calls):
  """Stands in for `python main.py ...`: records the command and writes a results.json
  whose VIBE accuracy is the --config.attack.rate it was given."""

  def run(command, cwd, stdout, stderr, check):
    calls.append(command)
    workdir = next(a.split("=", 1)[1] for a in command if a.startswith("--workdir="))
    rate = next(
        (float(a.split("=", 1)[1]) for a in command if a.startswith("--config.attack.rate=")), 0.1
    )
    metrics = {"acc": rate, "asr": 0.0, "ra": 0.0}
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump({"config": {"attack": "badnets"}, "vibe": metrics, "baseline": metrics}, f)
    return subprocess.CompletedProcess(command, 0)

  return run


def test_pair_whose_overrides_changed_is_rerun(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(sweep.subprocess, "run", fake_main(calls))
  runs = sweep.plan(
      [os.path.join(digits.ROOT, "configs", "digits_badnets.py")], ["a"], str(tmp_path)
  )
  (run,) = runs

  assert sweep.run_all(runs, ["--config.attack.rate=0.1"], log=lambda line: None) == []
  assert sweep.run_all(runs, ["--config.attack.rate=0.1"], log=lambda line: None) == []
  assert len(calls) == 1  # the same overrides: skipped

  lines = []
  sweep.run_all(runs, ["--config.attack.rate=0.2"], log=lines.append)
  assert len(calls) == 2 and "--config.attack.rate=0.2" in calls[-1]
  assert "ran before with overrides '--config.attack.rate=0.1'; starting over" in lines[0]
  assert json.loads(open(run.results_path).read())["vibe"]["acc"] == 0.2  # not the old numbers
  (aside,) = [p for p in os.listdir(run.workdir) if p.startswith("replaced-")]
  old = json.loads(open(os.path.join(run.workdir, aside, "results.json")).read())
  assert old["vibe"]["acc"] == 0.1  # moved, not deleted
  stored = json.loads(open(os.path.join(run.workdir, sweep.OVERRIDES_FILE)).read())
  assert stored["overrides"] == ["--config.attack.rate=0.2"]


def test_finished_pair_of_unknown_overrides_is_rerun(tmp_path, monkeypatch):
  """A workdir of an earlier sweep (no sweep_overrides.json): its numbers cannot be trusted
  to match these overrides."""
  calls = []
  monkeypatch.setattr(sweep.subprocess, "run", fake_main(calls))
  (run,) = sweep.plan(
      [os.path.join(digits.ROOT, "configs", "digits_badnets.py")], ["a"], str(tmp_path)
  )
  os.makedirs(run.workdir)
  with open(run.results_path, "w") as f:
    json.dump({"vibe": {"acc": 0.5, "asr": 0.0, "ra": 0.0}}, f)
  sweep.run_all([run], [], log=lambda line: None)
  assert len(calls) == 1
