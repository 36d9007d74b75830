"""The command line (main.py), run in this process: config files with an argument, --config.*
overrides, the train and eval modes. (reliability/test_cli.py: its errors; report/
test_report.py: --mode report; e2e/test_pretrain_pipeline.py: --mode pretrain.)"""

import json

from helpers.cli import run_main


def test_train_then_eval_reproduces_the_results(tmp_path, capsys):
  workdir = tmp_path / "run"
  args = [
      "--config",
      "configs/digits_badnets.py:f,runlocal",
      f"--workdir={workdir}",
      "--config.report.enabled=False",
      "--config.report.tensorboard=False",
      "--config.train.steps=30",
  ]
  run_main(*args)
  out = capsys.readouterr().out
  assert "E-step @ 20" in out
  assert "baseline" in out and "VIBE (f)" in out
  results = json.loads((workdir / "results.json").read_text())
  for model in ("baseline", "vibe"):
    assert set(results[model]) >= {"acc", "asr", "ra"}
    assert all(0.0 <= results[model][m] <= 1.0 for m in ("acc", "asr", "ra"))
  config = json.loads((workdir / "config.json").read_text())
  assert config["variant"] == "f" and config["train"]["steps"] == 30
  assert config["train"]["batch_size"] == 64  # the runlocal schedule

  # --mode eval reproduces the metrics stored at the end of training.
  run_main(*args, "--mode=eval")
  evaluated = json.loads((workdir / "eval.json").read_text())
  for name in ("baseline", "vibe"):
    assert evaluated[name]["step"] == (40 if name == "baseline" else 30)
    for metric in ("acc", "asr", "ra"):
      assert evaluated[name][metric] == results[name][metric]
