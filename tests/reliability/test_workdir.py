"""A workdir belongs to one experiment: a rerun with another config is refused (naming the
fields), volatile fields may change, --restart moves the old contents aside, config.json and
experiment.json are written only after validation, eval and report check the identity."""

from __future__ import annotations

import json
import os
import shutil

import jax
import pytest

from vibe_jax import checkpoint, parallel, prepare, run
from vibe_jax import workdir as workdir_lib
from vibe_jax.em import loop
from vibe_jax.report import report

from . import digits

VIBE_ONLY = {"baseline.enabled": False}


def vibe_only(arg="a,runlocal", attack="badnets", **fields):
  return digits.config(arg, attack, **VIBE_ONLY, **fields)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished VIBE-only runlocal workdir (variant a, BadNets, 40 iterations)."""
  workdir = tmp_path_factory.mktemp("finished") / "run"
  results = run.train_and_evaluate(vibe_only(), str(workdir))
  return workdir, results


@pytest.fixture
def copy(finished, tmp_path):
  """A private copy of the finished workdir."""
  workdir = tmp_path / "run"
  shutil.copytree(finished[0], workdir)
  return workdir


def snapshot(workdir):
  """What a refused rerun must leave untouched."""
  return {
      name: (workdir / name).read_bytes()
      for name in ("config.json", "experiment.json", "results.json", "log.jsonl")
  }


@pytest.mark.parametrize(
    "arg,attack,fields,differing",
    [
        ("a,runlocal", "blend", {}, r"attack\.name 'badnets' -> 'blend'"),
        ("f,runlocal", "badnets", {}, r"variant 'a' -> 'f'"),
        ("a,runlocal", "badnets", {"train.steps": 20}, r"train\.steps 40 -> 20"),
        ("a,runlocal", "badnets", {"attack.rate": 0.2}, r"attack\.rate 0\.1 -> 0\.2"),
    ],
    ids=["blend", "variant-f", "steps-20", "rate-0.2"],
)
def test_rerun_of_another_experiment_is_refused(copy, arg, attack, fields, differing):
  before = snapshot(copy)
  with pytest.raises(workdir_lib.WorkdirMismatchError, match=differing) as error:
    run.train_and_evaluate(vibe_only(arg, attack, **fields), str(copy))
  assert "\n" not in str(error.value) and "--restart" in str(error.value)
  assert snapshot(copy) == before  # provenance of the finished run intact


def test_volatile_fields_may_change(copy, capsys):
  config = vibe_only(
      **{
          "train.log_every": 5,
          "train.eval_every": 40,
          "checkpoint.every": 10,
          "features.batch_size": 256,
          "report.enabled": False,
          "parallel.num_devices": 1,
      }
  )
  run.train_and_evaluate(config, str(copy))
  assert "resumed from the checkpoint at iteration 40" in capsys.readouterr().out


def test_restart_moves_the_old_contents_aside(copy, finished):
  old_results = (copy / "results.json").read_text()
  results = run.train_and_evaluate(vibe_only(attack="blend"), str(copy), restart=True)
  (aside,) = [p for p in copy.iterdir() if p.name.startswith("replaced-")]
  assert (aside / "results.json").read_text() == old_results  # moved, not deleted
  assert sorted(p.name for p in (aside / "checkpoints" / "vibe").iterdir()) == ["20", "40"]
  assert json.loads((copy / "config.json").read_text())["attack"]["name"] == "blend"
  assert json.loads((copy / "results.json").read_text())["config"]["attack"] == "blend"
  assert results["config"]["attack"] == "blend"


def test_nothing_is_written_before_the_config_is_valid(tmp_path, copy):
  before = snapshot(copy)
  with pytest.raises(ValueError, match="attack.rate"):
    run.train_and_evaluate(vibe_only(**{"attack.rate": 2.0}), str(copy))
  assert snapshot(copy) == before
  with pytest.raises(ValueError, match="attack.rate"):
    run.train_and_evaluate(vibe_only(**{"attack.rate": 2.0}), str(tmp_path / "new"))
  assert not (tmp_path / "new" / "config.json").exists()


def test_checkpoint_of_another_experiment_is_refused(tmp_path):
  state = {"w": jax.numpy.zeros(3)}
  saved = checkpoint.TrainCheckpoints(tmp_path, save_every=1, fingerprint="aaaa")
  saved.save(1, state)
  saved.close()
  other = checkpoint.TrainCheckpoints(tmp_path, save_every=1, fingerprint="bbbb")
  with pytest.raises(checkpoint.CheckpointMismatchError, match="belongs to another experiment"):
    other.restore_latest(state)
  same = checkpoint.TrainCheckpoints(tmp_path, save_every=1, fingerprint="aaaa")
  assert same.restore_latest(state)[0] == 1


def test_checkpoint_beyond_the_phase_is_refused(tmp_path):
  """A checkpoint without a fingerprint (as older vibe_jax wrote) at iteration 40 and a
  phase of 20 iterations: resuming would log iterations 40.. as 20.."""
  config = vibe_only("f,runlocal")
  mesh = parallel.make_mesh(1)
  prepared = prepare.prepare(config, str(tmp_path), mesh)
  (phase,) = loop.phases(config, prepared.variant.train_mu_y)
  directory = str(tmp_path / "checkpoints")
  loop.fit(
      prepared.new_model(phase.kappa), prepared.data, phase, mesh=mesh, checkpoint_dir=directory
  )
  shorter = loop.Phase(**{**phase.__dict__, "steps": 20})
  with pytest.raises(
      checkpoint.CheckpointMismatchError, match=r"iteration 40, beyond train\.steps=20"
  ):
    loop.fit(
        prepared.new_model(phase.kappa), prepared.data, shorter, mesh=mesh, checkpoint_dir=directory
    )


def test_eval_checks_the_experiment_before_loading_data(copy, tmp_path):
  with pytest.raises(workdir_lib.WorkdirMismatchError, match=r"variant 'a' -> 'f'"):
    run.evaluate_checkpoint(vibe_only("f,runlocal"), str(copy))
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match="no trained experiment"):
    run.evaluate_checkpoint(vibe_only(), str(empty))
  assert os.listdir(empty) == []  # no features computed, no cache written
  shutil.move(copy / "checkpoints", tmp_path / "moved")
  with pytest.raises(FileNotFoundError, match="No training checkpoint"):
    run.evaluate_checkpoint(vibe_only(), str(copy))
  assert not (copy / "eval.json").exists()


def test_eval_of_the_same_experiment_scores_the_saved_models(copy, finished):
  evaluated = run.evaluate_checkpoint(vibe_only(), str(copy))
  assert evaluated["vibe"]["step"] == 40
  for metric in ("acc", "asr", "ra"):
    assert evaluated["vibe"][metric] == finished[1]["vibe"][metric]


def test_report_refuses_a_config_of_another_experiment(copy):
  with pytest.raises(workdir_lib.WorkdirMismatchError, match=r"attack\.name 'badnets' -> 'blend'"):
    report.write_report(str(copy), vibe_only(attack="blend").to_dict())
  config = json.loads((copy / "config.json").read_text())
  config["variant"] = "f"  # config.json edited by hand
  (copy / "config.json").write_text(json.dumps(config))
  with pytest.raises(workdir_lib.WorkdirMismatchError, match=r"config\.json .*variant 'a' -> 'f'"):
    report.write_report(str(copy))


def test_eval_prints_its_table_when_eval_json_cannot_be_written(copy, monkeypatch, capsys):
  def full_disk(path, payload):
    raise OSError(28, "No space left on device", str(path))

  monkeypatch.setattr(run.files, "write_json_atomically", full_disk)
  with pytest.raises(OSError, match="No space left"):
    run.evaluate_checkpoint(vibe_only(), str(copy))
  assert "VIBE (a)" in capsys.readouterr().out
