"""Two processes of two CPU devices each (gloo, a local coordinator) take the steps one
process takes, each process reading, poisoning and extracting only its own training rows:
the EM on frozen features (baseline and VIBE) and with a fine-tuned backbone (ss_a).
(Pretraining as two processes: e2e/test_pretrain_pipeline.py.)"""

import json
import os
import sys

import numpy as np
import pytest
from flax import nnx

from helpers import ROOT
from helpers.configs import tiny_config
from helpers.models import random_backbone
from helpers.processes import run_processes
from vibe_jax import run
from vibe_jax.checkpoint import save_backbone
from vibe_jax.models import backbone_config

HELPER = os.path.join(ROOT, "tests", "helpers", "run_digits.py")


def rows_read(path):
  """Every row index a run_digits.py RECORD_TRAINING_ROWS file recorded."""
  reads = []
  with open(path, "rb") as f:
    while f.peek(1):
      reads.append(np.load(f))
  return np.unique(np.concatenate(reads))


def records_of(workdir):
  with open(os.path.join(workdir, "log.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
  backbone = tmp_path / "backbone"  # a width-4 ResNet-18 (D = 32), fine-tuned by ss_a
  save_backbone(
      backbone,
      backbone_config("resnet18", "cifar", 4),
      nnx.state(random_backbone("resnet18", "cifar", 4)),
  )
  runs = {
      # runlocal: 40 baseline and 40 VIBE steps, E-steps at 0 and 20.
      "frozen": ("f", {}),
      # 10 fine-tuning steps of batch 64, E-steps at 0 and 5.
      "finetuned": (
          "ss_a",
          {
              "backbone.checkpoint": str(backbone),
              "baseline.enabled": False,
              "train.steps": 10,
              "estep.period": 5,
              "train.eval_every": 10,
              "train.log_every": 5,
          },
      ),
  }
  specs = [
      {"workdir": str(tmp_path / "two" / name), "variant": variant, "overrides": overrides}
      for name, (variant, overrides) in runs.items()
  ]
  outputs = run_processes(
      [sys.executable, HELPER, json.dumps(specs)],
      tmp_path / "logs",
      rank_env=lambda rank: {"RECORD_TRAINING_ROWS": str(tmp_path / f"rows{rank}")},
  )
  two = [
      json.loads(line.removeprefix("RESULT "))
      for line in outputs[0].splitlines()
      if line.startswith("RESULT ")
  ]
  assert len(two) == 2 and "RESULT " not in outputs[1]  # process 0 alone reports
  # The same runs in this process, on one device.
  one = []
  for name, (variant, overrides) in runs.items():
    workdir = str(tmp_path / "one" / name)
    results = run.train_and_evaluate(tiny_config("digits_badnets", variant, overrides), workdir)
    one.append({"results": results, "log": records_of(workdir)})

  (frozen_one, finetuned_one), (frozen_two, finetuned_two) = one, two
  for name in ("baseline", "vibe"):
    for metric in ("acc", "asr", "ra"):
      assert frozen_two["results"][name][metric] == pytest.approx(
          frozen_one["results"][name][metric], abs=2e-3
      )
  for metric in ("acc", "asr", "ra"):
    assert finetuned_two["results"]["vibe"][metric] == pytest.approx(
        finetuned_one["results"]["vibe"][metric], abs=4e-3
    )
  for single, multi, tolerance in (
      (frozen_one, frozen_two, 1e-3),
      (finetuned_one, finetuned_two, 2e-3),
  ):
    esteps = [(a, b) for a, b in zip(single["log"], multi["log"]) if a["kind"] == "estep"]
    assert [a["step"] for a, _ in esteps] == [b["step"] for _, b in esteps]
    assert len(esteps) == 2
    for a, b in esteps:
      for key in ("agree_given", "agree_true", "poison_restored"):
        assert a[key] == pytest.approx(b[key], abs=tolerance)  # 1e-3: one label in 1,258
  # Each process reads its own rows: of the 1,258 digits training rows (padded to 1,260)
  # devices 0-1 (process 0) hold rows 0..629, devices 2-3 (process 1) the rest; and after
  # the Leiden filter (ss_a) removed r rows, the kept rows' first half (padded) and second
  # half, which move the boundary by at most r.
  for run_index, result in enumerate(two):
    removed = result["results"].get("leiden_filter", {}).get("num_removed", 0)
    half = -(-(1258 - removed) // 4) * 2
    rows = [rows_read(tmp_path / f"rows{rank}.{run_index}.npy") for rank in range(2)]
    assert set(range(630)) <= set(rows[0]) and rows[0].max() < max(630, half + removed)
    assert set(range(630, 1258)) <= set(rows[1]) and rows[1].min() >= min(630, half)
