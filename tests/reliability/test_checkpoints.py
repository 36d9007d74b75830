"""Training checkpoints: resume on another device count, fall back from a corrupt one, refuse
one that belongs to another experiment."""

from __future__ import annotations

import shutil

import pytest

from . import digits

# A VIBE phase alone (40 steps, E-step every 20, checkpoint every 20).
VIBE_ONLY = {"variant": "f,runlocal", "baseline.enabled": False}


@pytest.mark.slow
def test_run_resumes_on_another_device_count(tmp_path):
  """4 devices pad the 1,258 digits rows to 1,260; the checkpoint at iteration 20 resumes on
  1 device (no padding) and ends where the uninterrupted 4-device run ends."""
  workdir = tmp_path / "run"
  four = digits.result_of(digits.run_in_process(workdir, VIBE_ONLY, devices=4))
  shutil.move(workdir / "checkpoints" / "vibe" / "40", tmp_path / "40")  # as if killed at 39
  (workdir / "results.json").unlink()

  done = digits.run_in_process(workdir, VIBE_ONLY, devices=1)
  one = digits.result_of(done)

  assert "resumed from the checkpoint at iteration 20" in done.stdout
  for metric in ("acc", "asr", "ra"):
    assert one["vibe"][metric] == pytest.approx(four["vibe"][metric], abs=2e-3)
