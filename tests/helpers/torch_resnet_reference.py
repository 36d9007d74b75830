"""An independent PyTorch ResNet with torchvision's module names, for reference checks.

torchvision is not a dependency, so the tests build the equivalent network here: BasicBlock /
Bottleneck (stride on the 3x3 conv), conv1/bn1/layerN.i.convK/bnK/downsample.0/.1 names, an
optional fc, and solo-learn's CIFAR stem (3x3 conv, stride 1, padding 2, no max-pool).
Import it only after `pytest.importorskip("torch")`.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, in_channels: int, channels: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(channels)
    self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(channels)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = _downsample(in_channels, channels * self.expansion, stride)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu(out + identity)


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, in_channels: int, channels: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, channels, 1, 1, 0, bias=False)
    self.bn1 = nn.BatchNorm2d(channels)
    self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(channels)
    self.conv3 = nn.Conv2d(channels, channels * self.expansion, 1, 1, 0, bias=False)
    self.bn3 = nn.BatchNorm2d(channels * self.expansion)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = _downsample(in_channels, channels * self.expansion, stride)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return self.relu(out + identity)


def _downsample(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
  if stride == 1 and in_channels == out_channels:
    return None
  return nn.Sequential(
      nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False),
      nn.BatchNorm2d(out_channels),
  )


_ARCHS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class TorchResNet(nn.Module):
  """forward() returns the pooled features (the fc, when present, is not applied)."""

  def __init__(self, arch: str, stem: str = "imagenet", width: int = 64, with_fc: bool = False):
    super().__init__()
    block, stage_sizes = _ARCHS[arch]
    if stem == "cifar":
      self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=2, bias=False)
    else:
      self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = (
        nn.Identity() if stem == "cifar" else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    )
    in_channels = width
    for stage, num_blocks in enumerate(stage_sizes):
      channels = width * 2**stage
      blocks = []
      for index in range(num_blocks):
        stride = 2 if stage > 0 and index == 0 else 1
        blocks.append(block(in_channels, channels, stride))
        in_channels = channels * block.expansion
      setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.feature_dim = in_channels
    if with_fc:
      self.fc = nn.Linear(in_channels, 1000)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return torch.flatten(self.avgpool(x), 1)


def randomise_batch_norms(model: nn.Module, seed: int) -> None:
  """Random affine params and running stats, so a wrong BN mapping cannot go unnoticed.

  Ranges keep activations O(1) through 50 layers, so an absolute tolerance is meaningful.
  """
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.BatchNorm2d):
        n = module.num_features
        module.weight.copy_(0.5 + 0.5 * torch.rand(n, generator=generator))
        module.bias.copy_(0.2 * torch.randn(n, generator=generator))
        module.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
        module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
        module.num_batches_tracked.fill_(123)
