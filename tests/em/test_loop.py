"""The EM loop (vibe_jax/em/loop.py) in this process: resuming from checkpoints ends where an
uninterrupted run ends, a NaN loss stops the run, a checkpoint of another model is refused.
(e2e/test_kill.py resumes a run killed by SIGKILL.)"""

import json

import numpy as np
import pytest
from flax import nnx

from helpers.configs import tiny_config
from vibe_jax import checkpoint, parallel, run
from vibe_jax.em import loop
from vibe_jax.em.data import shard_training_data
from vibe_jax.models.vibe import VibeHead, VibeModel

# 50 VIBE steps, E-steps at 0, 20 and 40, checkpoints every 10: step 30 lies between E-steps,
# so resuming there needs the pseudo-labels of the E-step at 20 from the checkpoint, and the
# E-step at 40 its potential g (the warm start; the logged solver steps differ without it).
RESUMABLE = {"checkpoint.every": 10, "train.log_every": 10, "train.steps": 50}


class Interrupted(Exception):
  pass


def interrupt_after_saving(monkeypatch, phase, step):
  """Makes the run stop (raise Interrupted) right after it saved `phase`'s checkpoint at
  `step`, as a kill there would."""
  save = checkpoint.TrainCheckpoints.save

  def save_then_stop(self, at, state, **kwargs):
    save(self, at, state, **kwargs)
    if self.directory.name == phase and at == step:
      raise Interrupted

  monkeypatch.setattr(checkpoint.TrainCheckpoints, "save", save_then_stop)


def records_of(workdir):
  with open(workdir / "log.jsonl") as f:
    return [json.loads(line) for line in f]


def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch, capsys):
  """Stopped inside the baseline, then inside VIBE: each restart resumes the phase from its
  last checkpoint, and the run ends with the results and log of an uninterrupted one."""
  config = lambda: tiny_config("digits_badnets", "f", RESUMABLE)
  uninterrupted = run.train_and_evaluate(config(), str(tmp_path / "reference"))
  workdir = tmp_path / "interrupted"
  for phase, step in (("baseline", 20), ("vibe", 30)):
    with monkeypatch.context() as patch:
      interrupt_after_saving(patch, phase, step)
      capsys.readouterr()
      with pytest.raises(Interrupted):
        run.train_and_evaluate(config(), str(workdir))
    if phase == "vibe":
      assert "baseline: resumed from the checkpoint at iteration 20" in capsys.readouterr().out
    assert not (workdir / "results.json").exists()
  resumed = run.train_and_evaluate(config(), str(workdir))
  assert "vibe-f: resumed from the checkpoint at iteration 30" in capsys.readouterr().out
  for name in ("baseline", "vibe"):
    assert resumed[name] == uninterrupted[name]
  # The restarts log the steps after each checkpoint once more, with the same values.
  reference = {(r["phase"], r["step"], r["kind"]): r for r in records_of(tmp_path / "reference")}
  for record in records_of(workdir):
    expected = reference[(record["phase"], record["step"], record["kind"])]
    assert record.keys() == expected.keys()
    for key, value in record.items():
      if key == "seconds":  # an E-step's wall time
        continue
      if isinstance(value, float):
        assert value == pytest.approx(expected[key], rel=1e-6), (record, key)
      else:
        assert value == expected[key], (record, key)


def test_non_finite_loss_stops_the_run(tmp_path):
  """A finite but huge learning rate (a NaN one is refused by validation) blows the loss up."""
  config = tiny_config("digits_badnets", "a", {"baseline.enabled": False, "train.lr": 1e30})
  with pytest.raises(FloatingPointError, match=r"loss became nan .*train\.lr"):
    run.train_and_evaluate(config, str(tmp_path))


def _head_model(dim, num_classes=3):
  head = VibeHead(
      num_classes,
      dim,
      kappa=10.0,
      nu=10.0,
      prior_temperature=0.02,
      likelihood="a",
      rngs=nnx.Rngs(0),
  )
  return VibeModel(head)


def test_checkpoint_that_does_not_fit_is_a_clear_error(tmp_path):
  """A training checkpoint restored into a model of another feature size (e.g. `--mode eval`
  with another features.extractor) lists each entry that differs, with both shapes."""
  mesh = parallel.make_mesh(1)
  rng = np.random.default_rng(0)
  labels = np.arange(32) % 3
  data = shard_training_data(
      rng.normal(size=(32, 5)).astype(np.float32), labels, labels, np.zeros(32, bool), mesh
  )
  config = tiny_config("digits_badnets", "a", {"train.steps": 2, "train.batch_size": 8})
  phase = loop.phases(config, train_mu_y=True)[-1]
  loop.fit(_head_model(5), data, phase, mesh=mesh, checkpoint_dir=str(tmp_path))
  model, step = loop.restore_model(_head_model(5), data, str(tmp_path), phase)
  assert step == 2
  with pytest.raises(
      checkpoint.CheckpointMismatchError, match="does not fit the model this config builds"
  ) as error:
    loop.restore_model(_head_model(4), data, str(tmp_path), phase)
  assert "params.head.mu_z.value: checkpoint (3, 5) vs config (3, 4)" in str(error.value)
