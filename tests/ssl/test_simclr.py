"""SimCLR pretraining: augmentations, NT-Xent against numpy, the loop, pretrain and the CLI."""

import colorsys
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
from helpers.processes import cpu_environment, run_processes
from helpers.tiny import TinyBackbone, tiny_ssl
from vibe_jax import features as features_lib
from vibe_jax import experiment, run
from vibe_jax.checkpoint import load_backbone_checkpoint
from vibe_jax.data import transforms
from vibe_jax.models import ResNet, build_backbone, load_backbone, load_backbone_model
from vibe_jax.ssl import augment, knn_eval, pretrain, simclr, training

from helpers import ROOT
# Only the flip: crop scale and ratio 1 make the crop the identity.
FLIP_ONLY = augment.AugmentConfig(
    crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter_prob=0.0, grayscale_prob=0.0, flip_prob=1.0
)


# Jitted once per config: eager vmap dispatches op by op and is ~5x slower here.
augment_batch = jax.jit(augment.augment_batch, static_argnums=2)


@pytest.fixture(scope="module")
def images():
  return jnp.asarray(np.random.default_rng(0).random((6, 16, 16, 3)), jnp.float32)


def test_augment_shapes_dtype_range(images):
  views = augment_batch(jax.random.key(0), images, augment.AugmentConfig())
  assert views.shape == images.shape and views.dtype == jnp.float32
  assert float(views.min()) >= 0.0 and float(views.max()) <= 1.0
  as_uint8 = augment_batch(
      jax.random.key(0), (images * 255).astype(jnp.uint8), augment.AugmentConfig()
  )
  assert as_uint8.dtype == jnp.float32 and float(as_uint8.max()) <= 1.0


def test_augment_deterministic_per_key_and_different_across_keys(images):
  config = augment.AugmentConfig()
  first = augment_batch(jax.random.key(3), images, config)
  np.testing.assert_array_equal(first, augment_batch(jax.random.key(3), images, config))
  assert not np.allclose(first, augment_batch(jax.random.key(4), images, config))
  # Per-sample randomness: identical inputs get different views.
  same = augment_batch(jax.random.key(3), jnp.repeat(images[:1], 4, 0), config)
  assert not np.allclose(same[0], same[1])


def test_forced_flip_is_exact_mirror(images):
  views = augment_batch(jax.random.key(0), images, FLIP_ONLY)
  np.testing.assert_array_equal(views, images[:, :, ::-1])


def test_forced_grayscale_has_equal_channels(images):
  config = augment.AugmentConfig(jitter_prob=0.0, grayscale_prob=1.0, flip_prob=0.0)
  views = np.asarray(augment_batch(jax.random.key(0), images, config))
  np.testing.assert_array_equal(views[..., 0], views[..., 1])
  np.testing.assert_array_equal(views[..., 0], views[..., 2])


def test_full_crop_is_identity(images):
  same = augment.random_resized_crop(jax.random.key(0), images[0], (1.0, 1.0), (1.0, 1.0))
  np.testing.assert_array_equal(same, images[0])


@pytest.mark.parametrize(
    "seed,size", [(0, None), (1, None), (2, None), (0, (24, 20)), (1, (9, 11))]
)
def test_crop_matches_torch_crop_then_bilinear_resize(images, seed, size):
  torch = pytest.importorskip("torch")
  key = jax.random.key(seed)
  image = images[seed]
  crop_key = jax.random.split(key, 5)[0]  # augment_image's first key
  top, left, h, w = (
      int(v) for v in augment._crop_box(crop_key, 16, 16, (0.08, 1.0), (3 / 4, 4 / 3))
  )
  assert 0 <= top and top + h <= 16 and 0 <= left and left + w <= 16
  box = torch.from_numpy(np.array(image[top : top + h, left : left + w])).permute(2, 0, 1)
  expected = torch.nn.functional.interpolate(
      box[None], size=size or (16, 16), mode="bilinear", align_corners=False
  )[0]
  got = augment.random_resized_crop(crop_key, image, size=size)
  np.testing.assert_allclose(got, expected.permute(1, 2, 0).numpy(), atol=1e-6)


def test_views_have_the_size_the_eval_transform_feeds_the_backbone(images):
  """Pretraining sees the resolution VIBE's feature passes use (ImageNet: 224 crops)."""
  assert pretrain.view_size(transforms.get_pipeline("digits"), (32, 32, 3)) == (32, 32)
  assert pretrain.view_size(transforms.get_pipeline("imagenet30"), (64, 48, 3)) == (224, 224)
  config = augment.AugmentConfig(output_size=(20, 24))
  assert augment_batch(jax.random.key(0), images, config).shape == (6, 20, 24, 3)


def test_hsv_round_trip_matches_colorsys():
  rgb = np.random.default_rng(1).random((200, 3)).astype(np.float32)
  rgb[:3] = 0.5  # grey: hue and saturation 0
  expected = np.array([colorsys.rgb_to_hsv(*pixel) for pixel in rgb])
  np.testing.assert_allclose(augment.rgb_to_hsv(jnp.asarray(rgb)), expected, atol=1e-6)
  np.testing.assert_allclose(augment.hsv_to_rgb(jnp.asarray(expected, jnp.float32)), rgb, atol=1e-6)
  shifted = np.array([colorsys.hsv_to_rgb((h + 0.25) % 1.0, s, v) for h, s, v in expected])
  np.testing.assert_allclose(augment.adjust_hue(jnp.asarray(rgb), 0.25), shifted, atol=1e-5)


def test_bad_crop_scale_names_the_field():
  with pytest.raises(ValueError, match="ssl.crop_scale_min"):
    augment.AugmentConfig(crop_scale=(0.0, 1.0))


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


def test_schedule_warms_up_then_decays_to_zero():
  ssl = tiny_ssl(100, lr=0.5, warmup_steps=10)
  schedule = training.learning_rate_schedule(ssl)
  np.testing.assert_allclose(
      [schedule(0), schedule(5), schedule(10), schedule(55), schedule(100)],
      [0.0, 0.25, 0.5, 0.25, 0.0],
      atol=1e-6,
  )
  short = training.learning_rate_schedule(tiny_ssl(5, lr=0.5, warmup_steps=10))
  np.testing.assert_allclose(short(4), 0.2, atol=1e-6)  # ends inside the warmup


@pytest.mark.parametrize("name", ["lars", "sgd", "adam"])
def test_optimizers_decay_kernels_but_not_biases(name):
  ssl = tiny_ssl(10, optimizer=name, lr=0.1, weight_decay=0.5)
  params = {"kernel": jnp.ones((3, 4)), "bias": jnp.ones((4,))}
  optimizer = training.make_optimizer(ssl)
  zero_grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = optimizer.update(zero_grads, optimizer.init(params), params)
  assert float(jnp.max(updates["kernel"])) < 0.0  # weight decay shrinks the kernel
  np.testing.assert_array_equal(updates["bias"], 0.0)


def test_knn_accuracy_matches_bruteforce():
  rng = np.random.default_rng(3)
  train, test = rng.normal(size=(40, 5)), rng.normal(size=(13, 5))
  train_labels, test_labels = rng.integers(0, 3, 40), rng.integers(0, 3, 13)
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  neighbours = np.argsort(-unit(test) @ unit(train).T, axis=1)[:, :5]
  votes = np.stack([np.bincount(train_labels[row], minlength=3) for row in neighbours])
  expected = np.mean(votes.argmax(1) == test_labels)
  got = knn_eval.knn_accuracy(train, train_labels, test, test_labels, k=5)
  assert got == pytest.approx(expected)
  # Chunking with a padded last chunk gives the same predictions.
  np.testing.assert_array_equal(
      knn_eval.knn_predict(train, train_labels, test, k=5, chunk_size=4), votes.argmax(1)
  )


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


def _digits_ssl_config(steps):
  config = digits_badnets.get_config()
  config.backbone.width = 4
  config.ssl.update(
      {
          "steps": steps,
          "batch_size": 32,
          "warmup_steps": 2,
          "projector_hidden_dim": 16,
          "projector_output_dim": 8,
          "log_every": 10,
      }
  )
  return config


@pytest.mark.parametrize("dataset", ["digits", "cifar10"])
def test_views_are_normalised_like_the_vibe_pipeline(dataset):
  """With the augmentation switched off, a view is exactly what VIBE's eval transform gives
  the backbone: one source of input statistics for pretraining and fine-tuning."""
  identity = augment.AugmentConfig(
      crop_scale=(1.0, 1.0),
      crop_ratio=(1.0, 1.0),
      jitter_prob=0.0,
      grayscale_prob=0.0,
      flip_prob=0.0,
  )
  pipeline = transforms.get_pipeline(dataset)
  images = jnp.asarray(np.random.default_rng(7).integers(0, 256, (4, 32, 32, 3), np.uint8))
  views = training.make_views(jax.random.key(0), images, identity, pipeline.mean, pipeline.std)
  expected = pipeline.eval(images)
  np.testing.assert_allclose(views, jnp.concatenate([expected, expected]), atol=1e-5)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("optimizer", "rmsprop", "ssl.optimizer"),
        ("warmup_steps", -1, "ssl.warmup_steps"),
        ("batch_size", 0, "ssl.batch_size"),
        ("crop_scale_min", 1.5, "ssl.crop_scale_min"),
    ],
)
def test_bad_ssl_config_fails_before_training(field, value, match):
  config = _digits_ssl_config(steps=20)
  config.ssl[field] = value
  with pytest.raises(ValueError, match=match):
    pretrain.validate_ssl_config(config)


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


def test_pretraining_an_ss_config_needs_no_checkpoint_yet():
  """`--mode pretrain` with the ss_f config validates only data and ssl fields; training
  it still asks for the checkpoint."""
  config = digits_badnets.get_config("ss_f")
  experiment.validate_data_config(config)
  pretrain.validate_ssl_config(config)
  with pytest.raises(ValueError, match="backbone.checkpoint"):
    experiment.validate_config(config)


def test_pretraining_is_a_mode_of_every_digits_config_not_a_variant():
  from configs import digits_blend

  config = digits_blend.get_config("ss_f")
  assert config.attack.name == "blend"
  assert config.ssl.to_dict() == digits_badnets.get_config().ssl.to_dict()
  with pytest.raises(ValueError, match="--mode pretrain"):
    digits_badnets.get_config("ssl")


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
