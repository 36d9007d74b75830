"""Checkpoint/resume, eval mode, shape-mismatch errors, and multi-device equivalence."""

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers.processes import cpu_environment, run_processes

from helpers import ROOT
HELPER = os.path.join(ROOT, "tests", "helpers", "run_digits.py")
SMALL = [
    "--config.train.steps=300",
    "--config.baseline.steps=200",
    "--config.estep.period=100",
    "--config.train.batch_size=64",
    "--config.train.log_every=50",
]


def run_helper(workdir, overrides, devices=1, env=None, **kwargs):
  kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
  return subprocess.Popen(
      [sys.executable, HELPER, str(workdir), *overrides],
      cwd=ROOT,
      env=cpu_environment(devices, env),
      text=True,
      **kwargs,
  )


def result_of(process, timeout=900):
  out, err = process.communicate(timeout=timeout)
  assert process.returncode == 0, err[-4000:]
  line = [l for l in out.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line.removeprefix("RESULT ")), out + err


def main_py(*args):
  done = subprocess.run(
      [sys.executable, "main.py", *args],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=900,
      env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  return done


@pytest.mark.slow
def test_one_and_eight_devices_agree(tmp_path):
  one, _ = result_of(run_helper(tmp_path / "one", SMALL, devices=1))
  eight, _ = result_of(run_helper(tmp_path / "eight", SMALL, devices=8))
  for name in ("baseline", "vibe"):
    for metric in ("acc", "asr", "ra"):
      assert one["results"][name][metric] == pytest.approx(eight["results"][name][metric], abs=2e-3)
  pairs = list(zip(one["log"], eight["log"]))
  assert len(pairs) == len(one["log"]) == len(eight["log"])
  for a, b in pairs:
    assert a["kind"] == b["kind"] and a["step"] == b["step"]
    if a["kind"] == "train":
      assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-5)
    if a["kind"] == "estep":
      for key in ("agree_given", "agree_true", "poison_restored"):
        assert a[key] == pytest.approx(b[key], abs=1e-3)  # at most one label in 1,258


def test_batch_that_does_not_divide_over_devices(tmp_path):
  process = run_helper(tmp_path, SMALL + ["--config.train.batch_size=60"], devices=8)
  _, err = process.communicate(timeout=600)
  assert process.returncode != 0
  assert "train.batch_size=60 does not divide over 8 devices" in err


SHARDED_ESTEP = r"""
import numpy as np, jax, jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
from vibe_jax.em.estep import sinkhorn_pseudo_labels
rng = np.random.default_rng(0)
ln_p = np.log(rng.dirichlet(np.full(7, 0.4), size=4000)).astype(np.float32)
prior = rng.dirichlet(np.full(7, 5.0)).astype(np.float32)
mesh = jax.make_mesh((8,), ("data",))
sharded = jax.device_put(ln_p, NamedSharding(mesh, P("data")))
a, _ = sinkhorn_pseudo_labels(jnp.asarray(ln_p), jnp.asarray(prior))
b, _ = sinkhorn_pseudo_labels(sharded, jnp.asarray(prior))
print("AGREE", float(np.mean(np.asarray(a) == np.asarray(b))), len(b.sharding.device_set))
"""


def test_estep_on_sharded_features():
  done = subprocess.run(
      [sys.executable, "-c", SHARDED_ESTEP],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=600,
      env={
          **os.environ,
          "JAX_PLATFORMS": "cpu",
          "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
      },
  )
  assert done.returncode == 0, done.stderr[-3000:]
  agree = [l for l in done.stdout.splitlines() if l.startswith("AGREE")][0].split()
  assert float(agree[1]) >= 0.9995


def rows_read(path):
  """Every row index recorded by run_digits.py's RECORD_TRAINING_ROWS."""
  reads = []
  with open(path, "rb") as f:
    while f.peek(1):
      reads.append(np.load(f))
  return np.unique(np.concatenate(reads))


def run_two_processes(tmp_path, overrides):
  """The helper as 2 processes x 2 CPU devices (gloo); rank 0's result, and the training
  rows each process read."""
  outputs = run_processes(
      [sys.executable, HELPER, str(tmp_path / "multi"), *overrides],
      tmp_path / "logs",
      rank_env=lambda rank: {"RECORD_TRAINING_ROWS": str(tmp_path / f"rows{rank}.npy")},
  )
  line = [l for l in outputs[0].splitlines() if l.startswith("RESULT ")][-1]
  assert not any(l.startswith("RESULT ") for l in outputs[1].splitlines())  # only rank 0
  rows = [rows_read(tmp_path / f"rows{rank}.npy") for rank in range(2)]
  return json.loads(line.removeprefix("RESULT ")), rows


def assert_each_process_read_its_half(rows):
  """1,258 digits training rows padded to 1,260: devices 0-1 (process 0) hold rows 0..629,
  devices 2-3 (process 1) the rest."""
  np.testing.assert_array_equal(rows[0], np.arange(630))
  np.testing.assert_array_equal(rows[1], np.arange(630, 1258))


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
  with concurrent.futures.ThreadPoolExecutor() as pool:  # the reference runs alongside
    single = pool.submit(result_of, run_helper(tmp_path / "single", SMALL, devices=4))
    multi, rows = run_two_processes(tmp_path, SMALL)
  single, _ = single.result()
  for name in ("baseline", "vibe"):
    for metric in ("acc", "asr", "ra"):
      assert multi["results"][name][metric] == pytest.approx(
          single["results"][name][metric], abs=2e-3
      )
  for a, b in zip(single["log"], multi["log"]):
    if a["kind"] == "estep":
      for key in ("agree_given", "agree_true", "poison_restored"):
        assert a[key] == pytest.approx(b[key], abs=1e-3)
  assert_each_process_read_its_half(rows)


@pytest.mark.slow
def test_two_processes_fine_tuning_a_backbone_match_one(tmp_path):
  """ss_a: each process reads, poisons and extracts only its own training images; the
  fine-tuned model's E-steps and metrics equal a single process's."""
  from flax import nnx

  from vibe_jax.checkpoint import save_backbone
  from vibe_jax.models import backbone_config, build_backbone

  save_backbone(
      tmp_path / "backbone",
      backbone_config("resnet18", "cifar", 4),
      nnx.state(build_backbone("resnet18", "cifar", 4)),
  )
  overrides = [
      "--variant=ss_a",
      f"--config.backbone.checkpoint={tmp_path / 'backbone'}",
      "--config.baseline.enabled=False",
      "--config.train.steps=10",
      "--config.estep.period=5",
      "--config.train.eval_every=10",
      "--config.train.batch_size=64",
      "--config.train.log_every=5",
  ]
  with concurrent.futures.ThreadPoolExecutor() as pool:
    single = pool.submit(result_of, run_helper(tmp_path / "single", overrides, devices=4))
    multi, rows = run_two_processes(tmp_path, overrides)
  single, _ = single.result()
  for metric in ("acc", "asr", "ra"):
    assert multi["results"]["vibe"][metric] == pytest.approx(
        single["results"]["vibe"][metric], abs=4e-3
    )
  esteps = [(a, b) for a, b in zip(single["log"], multi["log"]) if a["kind"] == "estep"]
  assert len(esteps) == 2
  for a, b in esteps:
    for key in ("agree_given", "agree_true", "poison_restored"):
      assert a[key] == pytest.approx(b[key], abs=2e-3)
  assert_each_process_read_its_half(rows)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path):
  overrides = [
      "--config.train.steps=3000",
      "--config.baseline.steps=200",
      "--config.estep.period=250",
      "--config.checkpoint.every=200",
      "--config.train.log_every=50",
  ]
  reference, _ = result_of(run_helper(tmp_path / "reference", overrides))
  workdir = tmp_path / "killed"
  process = run_helper(workdir, overrides, start_new_session=True)
  deadline = time.time() + 600
  target = workdir / "checkpoints" / "vibe" / "600"
  while not target.exists() and process.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  assert process.poll() is None, "the run ended before it could be killed"
  os.killpg(process.pid, signal.SIGKILL)
  process.wait()
  assert not (workdir / "results.json").exists()
  resumed, output = result_of(run_helper(workdir, overrides))
  assert "resumed from the checkpoint at iteration" in output
  step = int(output.split("vibe-f: resumed from the checkpoint at iteration ")[1].split()[0])
  assert 600 <= step < 3000
  for name in ("baseline", "vibe"):
    assert resumed["results"][name] == reference["results"][name]

  # --mode eval reproduces the metrics stored at the end of training.
  done = main_py(
      "--config", "configs/digits_badnets.py:f", f"--workdir={workdir}", "--mode=eval", *overrides
  )
  assert done.returncode == 0, done.stderr[-3000:]
  evaluated = json.loads((workdir / "eval.json").read_text())
  stored = json.loads((workdir / "results.json").read_text())
  for name in ("baseline", "vibe"):
    for metric in ("acc", "asr", "ra"):
      assert evaluated[name][metric] == stored[name][metric]
