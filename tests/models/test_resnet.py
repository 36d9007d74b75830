"""ResNet backbone: shapes, parameter counts against torchvision's, BatchNorm train/eval."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from helpers.models import random_backbone
from vibe_jax.models.resnet import ResNet

# torchvision's resnet18 / resnet50 parameter counts (11,689,512 / 25,557,032) minus the fc
# layer (512*1000+1000 / 2048*1000+1000), ImageNet stem.
TORCHVISION_PARAMS_NO_FC = {"resnet18": 11_176_512, "resnet50": 23_508_032}


def _num_params(model: nnx.Module) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _abstract(arch: str, stem: str, width: int = 64) -> ResNet:
  return nnx.eval_shape(lambda: ResNet(arch, stem=stem, width=width, rngs=nnx.Rngs(0)))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_param_count_matches_torchvision(arch: str) -> None:
  assert _num_params(_abstract(arch, "imagenet")) == TORCHVISION_PARAMS_NO_FC[arch]


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_param_count_matches_pytorch_reference(arch: str, stem: str) -> None:
  """The same count from an independently built PyTorch module (torchvision's layout)."""
  pytest.importorskip("torch")
  from helpers.torch_resnet_reference import TorchResNet

  torch_model = TorchResNet(arch, stem=stem)
  torch_count = sum(p.numel() for p in torch_model.parameters())
  if stem == "imagenet":
    assert torch_count == TORCHVISION_PARAMS_NO_FC[arch]
  assert _num_params(_abstract(arch, stem)) == torch_count


@pytest.mark.parametrize(
    "arch, stem, size, expected_dim",
    [
        ("resnet18", "cifar", 32, 512),
        ("resnet18", "imagenet", 224, 512),
        ("resnet50", "cifar", 32, 2048),
        ("resnet50", "imagenet", 224, 2048),
    ],
)
def test_full_width_feature_shape(arch: str, stem: str, size: int, expected_dim: int) -> None:
  """Shapes at the papers' width and resolution, traced abstractly (no compute)."""
  model = _abstract(arch, stem)
  graphdef, state = nnx.split(model)
  images = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, images)
  assert model.feature_dim == expected_dim
  assert out.shape == (2, expected_dim) and out.dtype == jnp.float32


@pytest.mark.parametrize("arch, expansion", [("resnet18", 1), ("resnet50", 4)])
@pytest.mark.parametrize("stem, size", [("cifar", 16), ("imagenet", 32)])
def test_small_forward_shapes(arch: str, expansion: int, stem: str, size: int) -> None:
  width = 4
  model = random_backbone(arch, stem, width)
  model.eval()
  images = jax.random.normal(jax.random.key(1), (3, size, size, 3))
  features = nnx.jit(lambda m, x: m(x))(model, images)
  assert features.shape == (3, 8 * width * expansion)
  assert bool(jnp.all(jnp.isfinite(features)))


def test_parameter_names_mirror_torchvision() -> None:
  names = {
      ".".join(str(part) for part in path)
      for path, _ in nnx.to_flat_state(nnx.state(_abstract("resnet50", "imagenet")))
  }
  for name in [
      "conv1.kernel",
      "bn1.scale",
      "bn1.bias",
      "bn1.mean",
      "bn1.var",
      "layer1.0.conv3.kernel",
      "layer1.0.downsample.0.kernel",
      "layer1.0.downsample.1.mean",
      "layer4.2.bn3.var",
  ]:
    assert name in names
  assert not any(name.startswith("fc") for name in names)


def test_split_gives_params_and_batch_stats() -> None:
  model = random_backbone("resnet18", "cifar", 4)
  graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  param_names = {path[-1] for path, _ in nnx.to_flat_state(params)}
  stat_names = {path[-1] for path, _ in nnx.to_flat_state(batch_stats)}
  assert param_names == {"kernel", "scale", "bias"}
  assert stat_names == {"mean", "var"}
  rebuilt = nnx.merge(graphdef, params, batch_stats)
  assert _num_params(rebuilt) == _num_params(model)


def _tiny_model_with_random_stats() -> ResNet:
  model = random_backbone("resnet18", "cifar", 4)
  rng = np.random.default_rng(0)
  for _, bn in nnx.iter_modules(model):
    if isinstance(bn, nnx.BatchNorm):
      n = bn.mean.shape[0]
      bn.mean[...] = jnp.asarray(rng.normal(0, 0.2, n), jnp.float32)
      bn.var[...] = jnp.asarray(rng.uniform(0.5, 1.5, n), jnp.float32)
  return model


def test_batch_norm_eval_uses_running_stats() -> None:
  model = _tiny_model_with_random_stats()
  model.eval()
  stats_before = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
  images = jax.random.normal(jax.random.key(2), (4, 12, 12, 3))
  features = model(images)
  # Per-sample: a sample's features do not depend on the rest of the batch.
  np.testing.assert_allclose(model(images[:1]), features[:1], atol=1e-6)
  # Running statistics are left alone.
  stats_after = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
  jax.tree.map(np.testing.assert_array_equal, stats_before, stats_after)
  # Stem BN against a numpy reference with the running statistics.
  conv_out = np.asarray(model.conv1(images))
  bn = model.bn1
  expected = (conv_out - np.asarray(bn.mean[...])) / np.sqrt(np.asarray(bn.var[...]) + 1e-5)
  expected = expected * np.asarray(bn.scale[...]) + np.asarray(bn.bias[...])
  np.testing.assert_allclose(bn(jnp.asarray(conv_out)), expected, atol=1e-5)


def test_batch_norm_train_updates_running_stats_like_pytorch_momentum_0_1() -> None:
  model = _tiny_model_with_random_stats()
  images = jax.random.normal(jax.random.key(3), (4, 12, 12, 3))
  conv_out = np.asarray(model.conv1(images), np.float64)
  old_mean = np.asarray(model.bn1.mean[...])
  old_var = np.asarray(model.bn1.var[...])

  model.train()
  features = model(images)

  batch_mean = conv_out.mean(axis=(0, 1, 2))
  batch_var = conv_out.var(axis=(0, 1, 2))  # biased, as flax keeps it (see docs)
  np.testing.assert_allclose(model.bn1.mean[...], 0.9 * old_mean + 0.1 * batch_mean, atol=1e-5)
  np.testing.assert_allclose(model.bn1.var[...], 0.9 * old_var + 0.1 * batch_var, atol=1e-5)
  # Train mode normalises with batch statistics: a sample's output depends on its batch.
  model.eval()
  assert not np.allclose(model(images), features, atol=1e-3)


def test_view_gives_eval_mode_graphdef_without_mutating() -> None:
  """One state, two graphdefs: how a jitted train step and eval step share weights."""
  model = _tiny_model_with_random_stats()
  eval_view = nnx.view(model, use_running_average=True)
  assert eval_view.bn1.use_running_average and not model.bn1.use_running_average
  _, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  eval_graphdef, _, _ = nnx.split(eval_view, nnx.Param, nnx.BatchStat)
  images = jax.random.normal(jax.random.key(4), (2, 8, 8, 3))
  from_view = nnx.merge(eval_graphdef, params, batch_stats)(images)
  model.eval()
  np.testing.assert_array_equal(from_view, model(images))


def test_bad_arguments_fail_with_known_names() -> None:
  with pytest.raises(ValueError, match=r"unknown backbone arch 'resnet99'.*resnet18.*resnet50"):
    ResNet("resnet99", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"unknown backbone stem 'tiny'.*cifar.*imagenet"):
    ResNet("resnet18", stem="tiny", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="width must be a positive int"):
    ResNet("resnet18", width=0, rngs=nnx.Rngs(0))


def test_bad_inputs_fail_early() -> None:
  model = random_backbone("resnet18", "cifar", 4)
  with pytest.raises(ValueError, match="NHWC"):
    model(jnp.zeros((1, 3, 8, 8)))
  with pytest.raises(ValueError, match="float"):
    model(jnp.zeros((1, 8, 8, 3), jnp.uint8))
