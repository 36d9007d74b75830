"""A run killed by SIGKILL mid-training resumes from its last checkpoint to the result of an
uninterrupted run. (Other resumes, in this process: em/test_loop.py.)"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import ROOT
from helpers.configs import tiny_config
from helpers.processes import cpu_environment
from vibe_jax import run

HELPER = os.path.join(ROOT, "tests", "helpers", "run_digits.py")
# 2,000 VIBE steps of batch 64 with a checkpoint every 200: the run is killed right after
# its first VIBE checkpoint, with many steps still to go.
OVERRIDES = {
    "train.steps": 2000,
    "train.log_every": 100,
    "train.eval_every": 1000,
    "estep.period": 250,
    "checkpoint.every": 200,
}


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path, capsys):
  workdir = tmp_path / "killed"
  spec = [{"workdir": str(workdir), "variant": "f", "overrides": OVERRIDES}]
  log = tmp_path / "killed.log"
  with open(log, "w") as output:  # a file: a full pipe would stall the run
    process = subprocess.Popen(
        [sys.executable, HELPER, json.dumps(spec)],
        cwd=ROOT,
        env=cpu_environment(1),
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
  target = workdir / "checkpoints" / "vibe" / "200"
  deadline = time.time() + 600
  while not target.exists() and process.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  assert process.poll() is None, "the run ended before it was killed:\n" + log.read_text()[-3000:]
  os.killpg(process.pid, signal.SIGKILL)
  process.wait()
  assert not (workdir / "results.json").exists()

  reference = run.train_and_evaluate(
      tiny_config("digits_badnets", "f", OVERRIDES), str(tmp_path / "reference")
  )
  capsys.readouterr()
  resumed = run.train_and_evaluate(tiny_config("digits_badnets", "f", OVERRIDES), str(workdir))
  out = capsys.readouterr().out
  assert "baseline: resumed from the checkpoint at iteration 40" in out
  step = int(out.split("vibe-f: resumed from the checkpoint at iteration ")[1].split()[0])
  assert 200 <= step < 2000
  for name in ("baseline", "vibe"):
    assert resumed[name] == reference[name]
