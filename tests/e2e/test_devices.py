"""One process, several devices (eight virtual CPU devices, helpers/devices.py): data parallel
runs take the steps one device takes, for the EM, the E-step and SSL pretraining; a batch
that does not divide over the devices is refused, naming the field."""

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

  # The EM on one device and over eight.
  one, eight = out["em"]["1"], out["em"]["8"]
  for name in ("baseline", "vibe"):
    for metric in ("acc", "asr", "ra"):
      assert one["results"][name][metric] == pytest.approx(eight["results"][name][metric], abs=2e-3)
  assert len(one["log"]) == len(eight["log"])
  for a, b in zip(one["log"], eight["log"]):
    assert a["kind"] == b["kind"] and a["step"] == b["step"]
    if a["kind"] == "train":
      assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-5)
    if a["kind"] == "estep":
      for key in ("agree_given", "agree_true", "poison_restored"):
        assert a[key] == pytest.approx(b[key], abs=1e-3)  # at most one label in 1,258
  assert "train.batch_size=60 does not divide over 8 devices" in out["em"]["error"]

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
