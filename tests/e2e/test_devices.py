"""One process, several devices (eight virtual CPU devices, helpers/devices.py): the E-step
on sharded ln P and data parallel SSL pretraining take the steps one device takes; a batch
that does not divide over the devices is refused, naming the field. (The EM over several
devices: e2e/test_multiprocess.py, one device against two processes of two; the batch check
of the EM phases: reliability/test_validation.py.)"""

import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT
from helpers.processes import cpu_environment


@pytest.mark.slow
def test_one_and_several_devices_agree():
  """All4One gives the same with `python tests/helpers/devices.py all4one`."""
  done = subprocess.run(
      [sys.executable, os.path.join(ROOT, "tests", "helpers", "devices.py")],
      cwd=ROOT,
      env=cpu_environment(8),
      capture_output=True,
      text=True,
      timeout=900,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  out = json.loads(done.stdout.splitlines()[-1])

  # The E-step on ln P sharded eight ways.
  assert out["estep"] >= 0.9995

  # SSL pretraining: data parallel over 4 devices takes the steps 1 device takes (BatchNorm
  # statistics and NT-Xent over the whole batch), really partitioned: no device convolves
  # all 2 x 16 views, each its 8.
  assert max(out["ssl"]["convolved_batch_sizes"]) == 8
  result = out["ssl"]["simclr"]
  assert [r["step"] for r in result["sharded"]] == [3, 6]
  for single, sharded in zip(result["single"], result["sharded"]):
    assert sharded["loss"] == pytest.approx(single["loss"], rel=1e-5)
  assert result["max_weight_difference"] < 1e-5
  assert "ssl.batch_size=6 does not divide over 4 devices" in result["error"]
