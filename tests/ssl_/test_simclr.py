"""SimCLR (vibe_jax/ssl/simclr.py): NT-Xent against numpy, the training loop; on four devices
and from the command line (moving to e2e/)."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import digits_badnets
from helpers import ROOT
from helpers.processes import cpu_environment, run_processes
from helpers.tiny import TinyBackbone, tiny_ssl
from vibe_jax import features as features_lib
from vibe_jax import run
from vibe_jax.checkpoint import load_backbone_checkpoint
from vibe_jax.models import ResNet, build_backbone, load_backbone, load_backbone_model
from vibe_jax.ssl import augment, simclr


def _nt_xent_numpy(z1, z2, temperature):
  """SimCLR's loss written out per anchor, float64."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n, half = len(z), len(z) // 2
  losses = []
  for i in range(n):
    positive = (i + half) % n
    others = [j for j in range(n) if j != i]
    logits = np.array([z[i] @ z[j] for j in others]) / temperature
    losses.append(-(z[i] @ z[positive] / temperature - np.log(np.exp(logits).sum())))
  return np.mean(losses)


@pytest.mark.parametrize("temperature", [0.2, 1.0])
def test_nt_xent_matches_numpy(temperature):
  rng = np.random.default_rng(2)
  z1, z2 = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
  got = simclr.nt_xent_loss(jnp.asarray(z1), jnp.asarray(z2), temperature)
  np.testing.assert_allclose(float(got), _nt_xent_numpy(z1, z2, temperature), rtol=1e-5)
  grads = jax.grad(lambda a: simclr.nt_xent_loss(a, jnp.asarray(z2), temperature))(
      jnp.asarray(z1, jnp.float32)
  )
  assert np.isfinite(grads).all()


@pytest.mark.slow
def test_loss_decreases_and_host_and_compiled_loops_agree():
  # 32 images, 16 x 16, width 4: the views of each image must be told apart from the rest.
  data = np.random.default_rng(4).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
  config = augment.AugmentConfig(crop_scale=(0.5, 1.0))

  def run(host_loop, steps):
    model = simclr.SimCLRModel(
        build_backbone("resnet18", "cifar", 4, seed=0), 32, 16, rngs=nnx.Rngs(1)
    )
    return simclr.fit(
        model,
        data,
        tiny_ssl(steps),
        augment_config=config,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        seed=0,
        host_loop=host_loop,
    )

  _, history = run(host_loop=True, steps=30)
  losses = [record["loss"] for record in history]
  assert losses[-1] < losses[0] - 0.2, losses
  # The same steps as one fori_loop per chunk (the accelerator path): the same run, up to
  # XLA:CPU using other convolution kernels inside a loop.
  _, compiled = run(host_loop=False, steps=30)
  np.testing.assert_allclose([r["loss"] for r in compiled], losses, rtol=2e-3)


def test_nan_loss_names_the_learning_rate_field():
  data = np.random.default_rng(5).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
  model = simclr.SimCLRModel(TinyBackbone(nnx.Rngs(0)), 8, 8, rngs=nnx.Rngs(1))
  with pytest.raises(FloatingPointError, match="ssl.lr"):
    simclr.fit(
        model,
        data,
        tiny_ssl(2, lr=float("nan"), log_every=2),
        augment_config=augment.AugmentConfig(),
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        seed=0,
    )


def _pretrain_command(workdir, *overrides):
  """`--mode pretrain` of a small SimCLR backbone on the poisoned digits."""
  return [
      sys.executable,
      "main.py",
      "--config",
      "configs/digits_badnets.py",
      "--mode",
      "pretrain",
      f"--workdir={workdir}",
      "--config.ssl.batch_size=32",
      "--config.backbone.width=4",
      "--config.ssl.projector_hidden_dim=16",
      "--config.ssl.projector_output_dim=8",
      *overrides,
  ]


@pytest.mark.slow
def test_one_and_four_devices_pretrain_alike():
  """Data parallel over 4 devices takes the steps 1 device takes (BatchNorm statistics and
  NT-Xent over the whole batch); a batch that does not divide is refused, naming the field.
  All4One gives the same with `python tests/helpers/ssl_devices.py all4one`."""
  done = subprocess.run(
      [sys.executable, os.path.join(ROOT, "tests", "helpers", "ssl_devices.py"), "simclr"],
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  out = json.loads(done.stdout.splitlines()[-1])
  # Really partitioned: no device convolves all 2 x 16 views, each its 8.
  assert max(out["convolved_batch_sizes"]) == 8
  result = out["simclr"]
  assert [r["step"] for r in result["sharded"]] == [3, 6]
  for single, sharded in zip(result["single"], result["sharded"]):
    assert sharded["loss"] == pytest.approx(single["loss"], rel=1e-5)
  assert result["max_weight_difference"] < 1e-5
  assert "ssl.batch_size=6 does not divide over 4 devices" in result["error"]


@pytest.mark.slow
def test_cli_pretrain_then_ss_f_end_to_end(tmp_path):
  """The issue's pipeline in miniature: `--mode pretrain` runs SimCLR on the poisoned digits
  and writes a backbone that loads (for fine-tuning and as the FM extractor); VIBE-SS-F
  then fine-tunes it inside EM (Leiden filter on) to finite metrics. Pretraining as 2
  processes x 2 devices takes the steps of 1 process x 4; process 0 alone writes and prints."""
  overrides = ["--config.ssl.steps=4", "--config.ssl.log_every=2"]
  single = subprocess.Popen(
      _pretrain_command(tmp_path / "one", *overrides),
      cwd=ROOT,
      env=cpu_environment(4),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
  )
  outputs = run_processes(_pretrain_command(tmp_path / "two", *overrides), tmp_path / "logs")
  out, err = single.communicate(timeout=900)
  assert single.returncode == 0, err[-3000:]
  assert "kNN (k=20, cosine)" in out
  assert "ends inside the learning-rate warmup" in err  # 4 steps < 30 warmup
  assert "kNN (k=20, cosine)" in outputs[0] and "kNN" not in outputs[1]
  assert sorted(os.listdir(tmp_path / "two")) == [
      "backbone",
      "pretrain.json",
      "pretrain_config.json",
      "pretrain_log.jsonl",
  ]
  one, two = (
      [
          json.loads(line)
          for line in (tmp_path / run / "pretrain_log.jsonl").read_text().splitlines()
      ]
      for run in ("one", "two")
  )
  assert [record["step"] for record in two] == [2, 4]
  for a, b in zip(one, two, strict=True):
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
  (_, state_one), (_, state_two) = (
      load_backbone_checkpoint(tmp_path / run / "backbone") for run in ("one", "two")
  )
  for a, b in zip(jax.tree.leaves(state_one), jax.tree.leaves(state_two), strict=True):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5)
  summary = json.loads((tmp_path / "two" / "pretrain.json").read_text())
  assert (summary["devices"], summary["processes"]) == (4, 2)  # one mesh over both processes
  assert 0.0 <= summary["knn_accuracy_backbone"] <= 1.0 and summary["steps"] == 4

  backbone = tmp_path / "two" / "backbone"
  features = load_backbone(backbone)(jnp.zeros((3, 32, 32, 3), jnp.float32))
  assert features.shape == (3, 32) and np.isfinite(features).all()  # D = 8 * width
  assert isinstance(load_backbone_model(backbone), ResNet)  # what the SS variants fine-tune
  # The FM path's extractor reads it too (features.extractor='backbone').
  config = digits_badnets.get_config("fm_f")
  config.features.extractor, config.backbone.checkpoint = "backbone", str(backbone)
  images = np.random.default_rng(6).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
  extracted = features_lib.make_extractor(config, images)(images)
  assert extracted.shape == (5, 32)
  np.testing.assert_allclose(np.linalg.norm(extracted, axis=1), 1.0, rtol=1e-5)

  config = digits_badnets.get_config("ss_f")
  config.backbone.checkpoint = str(backbone)
  config.train.update({"steps": 6, "batch_size": 32, "log_every": 3, "eval_every": 6})
  config.estep.period = 3
  config.baseline.enabled = False  # a fine-tuned baseline: test_convert's ss_f run
  run.train_and_evaluate(config, str(tmp_path / "run"))
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  assert results["config"]["variant"] == "ss_f" and "leiden_filter" in results
  for metric in ("acc", "asr", "ra"):
    assert np.isfinite(results["vibe"][metric]) and 0.0 <= results["vibe"][metric] <= 1.0
