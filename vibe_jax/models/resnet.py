"""Flax NNX ResNet-18/50 feature extractors whose parameter tree mirrors torchvision's names.

Why mirror torchvision: the VIBE reference backbones are solo-learn / torchvision ResNets, so
with the same module names (conv1, bn1, layer1.0.conv1, layer1.0.downsample.0, ...) weight
conversion is a name-for-name table (docs/conversion.md). Every convolution and pooling uses
explicit integer padding, never 'SAME', so outputs match PyTorch to float32 precision.

Train/eval mode is NNX's: `model.train()` makes every BatchNorm normalise with batch
statistics and update its running averages; `model.eval()` makes it use the running averages
(`nnx.view(model, use_running_average=True)` gives an eval-mode view without mutating the
model). A freshly built model is in train mode, as in PyTorch. The mode is a static attribute,
so it is part of the graphdef that `nnx.split(model, nnx.Param, nnx.BatchStat)` returns.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = [
    "ARCHITECTURES",
    "BN_EPSILON",
    "BN_MOMENTUM",
    "STEMS",
    "ArchSpec",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "check_args",
    "get_arch",
]

# PyTorch's BatchNorm momentum 0.1 weights the *new* batch statistic; flax's momentum weights
# the *old* running average, so the same update is momentum 0.9 here.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# torchvision's conv init: kaiming_normal_(mode="fan_out", nonlinearity="relu"); jax's
# "normal" is the untruncated one ("truncated_normal" is the other).
_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")

STEMS = ("cifar", "imagenet")


def _conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int,
    padding: int,
    *,
    rngs: nnx.Rngs,
) -> nnx.Conv:
  """A bias-free conv with explicit symmetric padding, as torch.nn.Conv2d(bias=False)."""
  return nnx.Conv(
      in_channels,
      out_channels,
      kernel_size=(kernel_size, kernel_size),
      strides=(stride, stride),
      padding=((padding, padding), (padding, padding)),
      use_bias=False,
      kernel_init=_CONV_INIT,
      rngs=rngs,
  )


def _batch_norm(num_features: int, *, rngs: nnx.Rngs) -> nnx.BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.1 -> 0.9, eps 1e-5).

  Two-pass variance (use_fast_variance=False) because E[x^2]-E[x]^2 loses precision when
  activations have a large mean; PyTorch does not take that shortcut either.
  """
  return nnx.BatchNorm(
      num_features,
      momentum=BN_MOMENTUM,
      epsilon=BN_EPSILON,
      use_fast_variance=False,
      rngs=rngs,
  )


def _downsample(
    in_channels: int, out_channels: int, stride: int, *, rngs: nnx.Rngs
) -> nnx.List | None:
  """torchvision's shortcut projection (1x1 conv + BN), or None where identity fits.

  An nnx.List (not nnx.Sequential) so the parameter paths are downsample.0 / downsample.1,
  exactly torchvision's.
  """
  if stride == 1 and in_channels == out_channels:
    return None
  return nnx.List(
      [
          _conv(in_channels, out_channels, 1, stride, 0, rngs=rngs),
          _batch_norm(out_channels, rngs=rngs),
      ]
  )


def _shortcut(downsample: nnx.List | None, x: jax.Array) -> jax.Array:
  if downsample is None:
    return x
  conv, bn = downsample
  return bn(conv(x))


class BasicBlock(nnx.Module):
  """Two 3x3 convs (ResNet-18/34 block)."""

  expansion: ClassVar[int] = 1

  def __init__(self, in_channels: int, channels: int, stride: int, *, rngs: nnx.Rngs):
    out_channels = channels * self.expansion
    self.conv1 = _conv(in_channels, channels, 3, stride, 1, rngs=rngs)
    self.bn1 = _batch_norm(channels, rngs=rngs)
    self.conv2 = _conv(channels, out_channels, 3, 1, 1, rngs=rngs)
    self.bn2 = _batch_norm(out_channels, rngs=rngs)
    self.downsample = _downsample(in_channels, out_channels, stride, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = nnx.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return nnx.relu(y + _shortcut(self.downsample, x))


class Bottleneck(nnx.Module):
  """1x1 -> 3x3 -> 1x1 block with the stride on the 3x3 conv (torchvision's "v1.5")."""

  expansion: ClassVar[int] = 4

  def __init__(self, in_channels: int, channels: int, stride: int, *, rngs: nnx.Rngs):
    out_channels = channels * self.expansion
    self.conv1 = _conv(in_channels, channels, 1, 1, 0, rngs=rngs)
    self.bn1 = _batch_norm(channels, rngs=rngs)
    self.conv2 = _conv(channels, channels, 3, stride, 1, rngs=rngs)
    self.bn2 = _batch_norm(channels, rngs=rngs)
    self.conv3 = _conv(channels, out_channels, 1, 1, 0, rngs=rngs)
    self.bn3 = _batch_norm(out_channels, rngs=rngs)
    self.downsample = _downsample(in_channels, out_channels, stride, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = nnx.relu(self.bn1(self.conv1(x)))
    y = nnx.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return nnx.relu(y + _shortcut(self.downsample, x))


@dataclasses.dataclass(frozen=True)
class ArchSpec:
  """Depth of a ResNet: its block type and the number of blocks in layer1..layer4."""

  block: type[BasicBlock] | type[Bottleneck]
  stage_sizes: tuple[int, int, int, int]


ARCHITECTURES: dict[str, ArchSpec] = {
    "resnet18": ArchSpec(BasicBlock, (2, 2, 2, 2)),
    "resnet50": ArchSpec(Bottleneck, (3, 4, 6, 3)),
}


def get_arch(name: str) -> ArchSpec:
  """Looks up an architecture by name; an unknown name lists the known ones."""
  try:
    return ARCHITECTURES[name]
  except KeyError:
    raise ValueError(
        f"unknown backbone arch {name!r}; known archs: {sorted(ARCHITECTURES)}"
    ) from None


def check_args(arch: str, stem: str, width: int) -> None:
  """Fails early on an unknown arch or stem (listing the known ones) or a bad width."""
  get_arch(arch)
  if stem not in STEMS:
    raise ValueError(f"unknown backbone stem {stem!r}; known stems: {list(STEMS)}")
  if isinstance(width, bool) or not isinstance(width, int) or width < 1:
    raise ValueError(f"backbone width must be a positive int (64 = standard), got {width!r}")


class ResNet(nnx.Module):
  """ResNet trunk without the fc layer: float32 NHWC images -> (B, D) pooled features.

  stem='cifar' is solo-learn's CIFAR stem (3x3 conv, stride 1, padding 2, no max-pool);
  stem='imagenet' is torchvision's (7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool).
  `width` is the base channel count (64 in the papers); D = 8 * width * block expansion.
  """

  def __init__(self, arch: str, *, stem: str = "cifar", width: int = 64, rngs: nnx.Rngs):
    check_args(arch, stem, width)
    spec = get_arch(arch)
    self.arch = arch
    self.stem = stem
    self.width = width

    if stem == "cifar":
      self.conv1 = _conv(3, width, 3, 1, 2, rngs=rngs)
    else:
      self.conv1 = _conv(3, width, 7, 2, 3, rngs=rngs)
    self.bn1 = _batch_norm(width, rngs=rngs)

    in_channels = width
    for stage, num_blocks in enumerate(spec.stage_sizes):
      channels = width * 2**stage
      blocks = []
      for index in range(num_blocks):
        stride = 2 if stage > 0 and index == 0 else 1
        blocks.append(spec.block(in_channels, channels, stride, rngs=rngs))
        in_channels = channels * spec.block.expansion
      setattr(self, f"layer{stage + 1}", nnx.List(blocks))
    self.feature_dim = in_channels

  def __call__(self, images: jax.Array) -> jax.Array:
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(
          f"backbone expects NHWC images with 3 channels, got shape {images.shape}; "
          "transpose NCHW batches with x.transpose(0, 2, 3, 1)"
      )
    if not jnp.issubdtype(images.dtype, jnp.floating):
      raise ValueError(
          f"backbone expects normalised float images, got dtype {images.dtype}; "
          "convert and normalise uint8 images first"
      )
    x = nnx.relu(self.bn1(self.conv1(images)))
    if self.stem == "imagenet":
      x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
      for block in layer:
        x = block(x)
    return jnp.mean(x, axis=(1, 2))
