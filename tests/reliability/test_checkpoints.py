"""Training checkpoints: resume on another device count, fall back from a corrupt one, refuse
one that belongs to another experiment."""

from __future__ import annotations

import logging
import shutil

import pytest

from vibe_jax import run
from vibe_jax.checkpoint import CorruptCheckpointError

from . import digits

# A VIBE phase alone (40 steps, E-step every 20, checkpoint every 20).
VIBE_ONLY = {"variant": "f,runlocal", "baseline.enabled": False}


@pytest.mark.slow
def test_run_resumes_on_another_device_count(tmp_path, capsys):
  """4 devices pad the 1,258 digits rows to 1,260; the checkpoint at iteration 20 resumes on
  1 device (no padding; this process) and ends where the uninterrupted 4-device run ends."""
  workdir = tmp_path / "run"
  four = digits.result_of(digits.run_in_process(workdir, VIBE_ONLY, devices=4))
  shutil.move(workdir / "checkpoints" / "vibe" / "40", tmp_path / "40")  # as if killed at 39
  (workdir / "results.json").unlink()

  capsys.readouterr()
  one = run.train_and_evaluate(_vibe_only(), str(workdir))

  assert "resumed from the checkpoint at iteration 20" in capsys.readouterr().out
  for metric in ("acc", "asr", "ra"):
    assert one["vibe"][metric] == pytest.approx(four["vibe"][metric], abs=2e-3)


@pytest.fixture(scope="module")
def finished_vibe_run(tmp_path_factory):
  """A finished VIBE-only runlocal workdir (checkpoints at iterations 20 and 40) and its
  results: the reference an interrupted run must reproduce."""
  workdir = tmp_path_factory.mktemp("reference") / "run"
  results = run.train_and_evaluate(_vibe_only(), str(workdir))
  return workdir, results


def _vibe_only():
  return digits.config(
      VIBE_ONLY["variant"], **{k: v for k, v in VIBE_ONLY.items() if k != "variant"}
  )


def _data_files(step_dir):
  return sorted(p for p in step_dir.glob("default/ocdbt.process_0/d/*") if p.is_file())


def _truncate(step_dir):
  for path in _data_files(step_dir):
    with open(path, "r+b") as f:
      f.truncate(path.stat().st_size // 2)


def _zero(step_dir):
  for path in _data_files(step_dir):
    path.write_bytes(bytes(path.stat().st_size))


CORRUPTIONS = {
    "truncated data file": _truncate,
    "zeroed data file": _zero,
    "missing _METADATA": lambda step_dir: (step_dir / "default" / "_METADATA").unlink(),
    "missing item": lambda step_dir: shutil.rmtree(step_dir / "default"),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(
    finished_vibe_run, tmp_path, caplog, capsys, corruption
):
  reference_dir, reference = finished_vibe_run
  workdir = tmp_path / "run"
  shutil.copytree(reference_dir, workdir)
  (workdir / "results.json").unlink()
  CORRUPTIONS[corruption](workdir / "checkpoints" / "vibe" / "40")

  with caplog.at_level(logging.WARNING):
    results = run.train_and_evaluate(_vibe_only(), str(workdir))

  warning = " ".join(r.getMessage() for r in caplog.records)
  assert "skipped the corrupt checkpoint at iteration 40" in warning
  assert "using the one at iteration 20" in warning
  assert "does not fit" not in warning  # corruption, not a config mismatch
  assert "resumed from the checkpoint at iteration 20" in capsys.readouterr().out
  assert results["vibe"] == reference["vibe"]  # what the uninterrupted run scored
  assert (workdir / "checkpoints" / "vibe.corrupt" / "40").is_dir()  # moved, not deleted
  assert (workdir / "checkpoints" / "vibe" / "40").is_dir()  # saved again


def test_every_checkpoint_corrupt_is_one_error_naming_each(finished_vibe_run, tmp_path):
  reference_dir, _ = finished_vibe_run
  workdir = tmp_path / "run"
  shutil.copytree(reference_dir, workdir)
  for step in (20, 40):
    _zero(workdir / "checkpoints" / "vibe" / str(step))

  with pytest.raises(CorruptCheckpointError, match=r"iteration 40: .*; iteration 20: "):
    run.train_and_evaluate(_vibe_only(), str(workdir))
  assert not (workdir / "checkpoints" / "vibe.corrupt").exists()  # nothing moved
