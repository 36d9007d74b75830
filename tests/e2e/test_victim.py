"""The undefended deep victim (config section victim): a whole network trained end to end
on augmented images with cross-entropy on the poisoned labels, its own phase and results row,
DER of VIBE against it, restored by --mode eval."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from helpers.configs import tiny_config
from vibe_jax import parallel, run
from vibe_jax.em import loop
from vibe_jax.prepare import prepare_victim


@pytest.mark.slow
def test_victim_phase_trains_the_network_and_is_reported(tmp_path):
  overrides = {
      "victim.enabled": True,  # runlocal: 4 steps of batch 32, a width-4 ResNet-18
      "baseline.enabled": False,
      "train.steps": 20,
  }
  config = tiny_config("digits_badnets", "a", overrides, report=True)
  results = run.train_and_evaluate(config, str(tmp_path))

  victim, vibe = results["victim"], results["vibe"]
  assert all(0.0 <= victim[m] <= 1.0 for m in ("acc", "asr", "ra"))
  der = (max(0, victim["asr"] - vibe["asr"]) - max(0, victim["acc"] - vibe["acc"]) + 1) / 2
  assert vibe["der"] == pytest.approx(der)
  records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
  train = [r for r in records if r["phase"] == "victim" and r["kind"] == "train"]
  # Logged every 2 steps; cosine decay of lr 0.05 to 0 over the 4 steps.
  assert [r["step"] for r in train] == [2, 4]
  assert [r["lr"] for r in train] == pytest.approx([0.025, 0.0], abs=1e-7)
  assert "| victim |" in (tmp_path / "report.md").read_text()

  # --mode eval restores the victim (backbone and head) and scores it alike.
  evaluated = run.evaluate_checkpoint(config, str(tmp_path))
  for metric in ("acc", "asr", "ra"):
    assert evaluated["victim"][metric] == victim[metric]
  # The whole network trained: the saved backbone moved away from its initialisation.
  phase = loop.phases(config, train_mu_y=True)[0]
  victim_inputs = prepare_victim(config, str(tmp_path), parallel.make_mesh(1))
  trained, step = loop.restore_model(
      victim_inputs.new_model(phase.kappa),
      victim_inputs.data,
      str(tmp_path / "checkpoints" / "victim"),
      phase,
  )
  fresh = victim_inputs.new_model(phase.kappa)
  assert (phase.name, step) == ("victim", 4)
  moved = [
      not np.allclose(a, b)
      for a, b in zip(
          jax.tree.leaves(nnx.state(fresh.backbone, nnx.Param)),
          jax.tree.leaves(nnx.state(trained.backbone, nnx.Param)),
          strict=True,
      )
  ]
  assert all(moved), f"{moved.count(False)} of {len(moved)} backbone parameters did not train"
