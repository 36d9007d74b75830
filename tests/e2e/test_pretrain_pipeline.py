"""The issue's pipeline in miniature: `main.py --mode pretrain` runs SimCLR on the poisoned
digits, as two processes of two devices (the steps one process takes on one device; process
0 alone writes and prints), and writes a backbone that loads, for the FM extractor and for
fine-tuning: VIBE-SS-F then fine-tunes it inside EM (Leiden filter on), baseline and report
included."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers.cli import run_main
from helpers.configs import tiny_config
from helpers.processes import run_processes
from vibe_jax import features as features_lib
from vibe_jax import run
from vibe_jax.checkpoint import load_backbone_checkpoint
from vibe_jax.models import ResNet, load_backbone, load_backbone_model
from vibe_jax.report import snapshots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The runlocal schedule: 4 SimCLR steps of batch 32, a width-4 ResNet-18 (D = 32); a warmup
# as long as the run, which pretraining warns of.
PRETRAIN = [
    "--config",
    "configs/digits_badnets.py:a,runlocal",
    "--mode",
    "pretrain",
    "--config.ssl.warmup_steps=4",
]


def records_of(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_cli_pretrain_then_ss_f_end_to_end(tmp_path, capsys, caplog):
  # In this process on one device first: the two processes then find the programs that
  # initialise a ResNet in the compilation cache (the one program both compile alike).
  run_main(*PRETRAIN, f"--workdir={tmp_path / 'one'}")
  assert "kNN (k=20, cosine)" in capsys.readouterr().out
  assert "ends inside the learning-rate warmup" in caplog.text

  outputs = run_processes(
      [sys.executable, "main.py", *PRETRAIN, f"--workdir={tmp_path / 'two'}"], tmp_path / "logs"
  )
  assert "kNN (k=20, cosine)" in outputs[0] and "kNN" not in outputs[1]
  assert sorted(os.listdir(tmp_path / "two")) == [
      "backbone",
      "pretrain.json",
      "pretrain_config.json",
      "pretrain_log.jsonl",
  ]
  summary = json.loads((tmp_path / "two" / "pretrain.json").read_text())
  assert (summary["devices"], summary["processes"]) == (4, 2)  # one mesh over both processes
  assert 0.0 <= summary["knn_accuracy_backbone"] <= 1.0 and summary["steps"] == 4

  # The steps and the trained backbone of one process on one device.
  one, two = (records_of(tmp_path / run / "pretrain_log.jsonl") for run in ("one", "two"))
  assert [record["step"] for record in two] == [2, 4]
  for a, b in zip(one, two, strict=True):
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
  (_, state_one), (_, state_two) = (
      load_backbone_checkpoint(tmp_path / run / "backbone") for run in ("one", "two")
  )
  for a, b in zip(jax.tree.leaves(state_one), jax.tree.leaves(state_two), strict=True):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5)

  backbone = tmp_path / "two" / "backbone"
  features = load_backbone(backbone)(jnp.zeros((3, 32, 32, 3), jnp.float32))
  assert features.shape == (3, 32) and np.isfinite(features).all()  # D = 8 * width
  assert isinstance(load_backbone_model(backbone), ResNet)  # what the SS variants fine-tune
  # The FM path's extractor reads it too (features.extractor='backbone').
  config = tiny_config("digits_badnets", "fm_f")
  config.features.extractor, config.backbone.checkpoint = "backbone", str(backbone)
  images = np.random.default_rng(6).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
  extracted = features_lib.make_extractor(config, images)(images)
  assert extracted.shape == (5, 32)
  np.testing.assert_allclose(np.linalg.norm(extracted, axis=1), 1.0, rtol=1e-5)

  # VIBE-SS-F fine-tunes it (6 steps of batch 32, E-steps at 0 and 3), after a fine-tuned
  # baseline (3 steps), with the report on.
  fields = {"steps": 6, "batch_size": 32, "log_every": 3, "eval_every": 6}
  config = tiny_config(
      "digits_badnets",
      "ss_f",
      {
          "backbone.checkpoint": str(backbone),
          "estep.period": 3,
          **{f"train.{k}": v for k, v in fields.items()},
          **{f"baseline.{k}": v for k, v in {**fields, "steps": 3, "eval_every": 3}.items()},
      },
      report=True,
  )
  workdir = tmp_path / "run"
  run.train_and_evaluate(config, str(workdir))
  results = json.loads((workdir / "results.json").read_text())
  assert results["config"]["variant"] == "ss_f" and "leiden_filter" in results
  for model in ("baseline", "vibe"):
    for metric in ("acc", "asr", "ra"):
      assert np.isfinite(results[model][metric]) and 0.0 <= results[model][metric] <= 1.0
  # The report's snapshots hold eval-mode backbone features (D = 32), fine-tuned in between.
  found = snapshots.load_snapshots(str(workdir / "snapshots"))
  assert [int(s["step"]) for s in found] == [0, 3]
  esteps = {r["step"]: r for r in records_of(workdir / "log.jsonl") if r["kind"] == "estep"}
  for snapshot in found:
    assert snapshot["features"].shape[1] == snapshot["mu_z"].shape[1] == 32
    assert np.mean(snapshot["pseudo_labels"] == snapshot["true_labels"]) == pytest.approx(
        esteps[int(snapshot["step"])]["agree_true"]
    )
  assert not np.array_equal(found[0]["features"], found[1]["features"])
  assert (workdir / "plots" / "features.png").read_bytes().startswith(PNG_SIGNATURE)
