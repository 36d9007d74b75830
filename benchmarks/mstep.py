"""M-step throughput: our jitted M-step (vibe_jax.engine) vs the same step written in PyTorch.

  python -m benchmarks.mstep [--quick] [--steps 1000] [--threads 1]

Frozen-feature path: VibeModel(VibeHead) on random unit-norm 512-d features (N = 50,000),
batch 256, likelihood a and f, C = 10 and 100; loss mean -ln P[i, l_i]; SGD momentum 0.9,
weight decay 5e-4 (coupled, PyTorch-style), lr 1e-3 for mu_z / mu_y and 0.1 for the prior.
Ours runs `engine.run_steps(..., host_loop=False)`, as the EM loop does without a backbone. The
PyTorch step uses the same formulas as vibe_jax/models/vibe.py (including the
log-matmul-exp normaliser of variant F) and the fastest plain-PyTorch batching (a
torch.randperm per epoch, tensor indexing; no DataLoader). No augmentation on either side.

ResNet-18 (CIFAR stem) fine-tuning: VibeModel with vibe_jax.models.resnet.ResNet as the
backbone (train mode: BatchNorm on batch statistics) vs a PyTorch ResNet-18 defined here,
batch 256 of 32x32 images, a few steps. Ours runs `engine.run_steps(..., host_loop=True)`
(one compiled call per step), as the EM loop does for backbones; --resnet-device-loop adds the
same steps inside one fori_loop (device_loop=True), to show why the engine does not on CPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks import common

FEATURE_DIM = 512
NUM_SAMPLES = 50_000
BATCH_SIZE = 256
LR, PRIOR_LR, MOMENTUM, WEIGHT_DECAY = 1e-3, 0.1, 0.9, 5e-4
PRIOR_TEMPERATURE = 0.02
FROZEN_CASES = tuple((c, lik) for c in (10, 100) for lik in ("a", "f"))


def frozen_problem(num_samples: int, num_classes: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  features = rng.standard_normal((num_samples, FEATURE_DIM)).astype(np.float32)
  features /= np.linalg.norm(features, axis=1, keepdims=True)
  given = rng.integers(num_classes, size=num_samples).astype(np.int32)
  pseudo = np.where(
      rng.random(num_samples) < 0.9, given, rng.integers(num_classes, size=num_samples)
  ).astype(np.int32)
  return features, given, pseudo


# ----------------------------------------------------------------------------- ours


def _optimizer_config():
  import ml_collections

  return ml_collections.ConfigDict(
      {"lr": LR, "prior_lr": PRIOR_LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY}
  )


def _kappa(num_classes: int) -> float:
  return common.concentration(num_classes)


class OursTrainer:
  """The library's M-step (vibe_jax.em.mstep.MStep through vibe_jax.engine) on a VibeModel."""

  def __init__(
      self,
      inputs,
      given,
      pseudo,
      num_classes: int,
      likelihood: str,
      backbone=None,
      feature_dim: int = FEATURE_DIM,
      batch_size: int = BATCH_SIZE,
      device_loop: bool | None = None,
  ):
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from vibe_jax.em import mstep
    from vibe_jax.models.vibe import VibeHead, VibeModel

    rng = np.random.default_rng(1)  # the same initial parameters as the PyTorch head
    centroids = rng.standard_normal((num_classes, feature_dim)).astype(np.float32)
    head = VibeHead(
        num_classes,
        feature_dim,
        kappa=_kappa(num_classes),
        nu=_kappa(num_classes),
        prior_temperature=PRIOR_TEMPERATURE,
        likelihood=likelihood,
        rngs=nnx.Rngs(0),
        mu_z=centroids,
        mu_y=centroids,
    )
    head.prior_logits[...] = jnp.asarray(rng.standard_normal(num_classes), jnp.float32)
    model = VibeModel(head, backbone)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    optimizer = mstep.make_optimizer(_optimizer_config(), params)
    num_samples = len(given)
    self.step_fn = mstep.MStep(
        graphdef=graphdef,
        optimizer=optimizer,
        objective="vibe",
        batch_size=batch_size,
        num_samples=num_samples,
    )
    self.state = mstep.MStepState.start(params, rest, optimizer.init(params), num_samples)
    self.inputs = mstep.MStepInputs(
        jnp.asarray(inputs), jnp.asarray(given), jnp.asarray(pseudo), jax.random.key(0)
    )
    # The engine's CPU policy unless told otherwise: a host loop for convolutional backbones.
    self.device_loop = backbone is None if device_loop is None else device_loop
    self.step = 0

  def run(self, num_steps: int) -> tuple[float, float]:
    """(seconds, mean loss) for `num_steps` steps in one engine.run_steps call."""
    from vibe_jax import engine

    start = time.perf_counter()
    self.state, metrics = engine.run_steps(
        self.step_fn, self.state, self.inputs, self.step, num_steps, host_loop=not self.device_loop
    )
    self.step += num_steps
    return time.perf_counter() - start, metrics["loss"]


# ----------------------------------------------------------------------------- PyTorch


def torch_head(
    num_classes: int, feature_dim: int, likelihood: str, *, mu_z=None, mu_y=None, prior_logits=None
):
  """A PyTorch module with vibe_jax's VibeHead formulas (VIBE_SPEC.md section 1); initial
  parameters from numpy arrays where given."""
  import torch
  import torch.nn.functional as F

  kappa = nu = _kappa(num_classes)

  class TorchVibeHead(torch.nn.Module):

    def __init__(self):
      super().__init__()
      rng = np.random.default_rng(1)
      centroids = rng.standard_normal((num_classes, feature_dim)).astype(np.float32)
      tensor = lambda given, default: torch.tensor(
          np.asarray(default if given is None else given, np.float32)
      )
      self.mu_z = torch.nn.Parameter(tensor(mu_z, centroids))
      self.mu_y = torch.nn.Parameter(tensor(mu_y, centroids))
      self.prior_logits = torch.nn.Parameter(tensor(prior_logits, rng.standard_normal(num_classes)))

    def ln_joint(self, features, given):
      mu_z = F.normalize(self.mu_z, dim=1)
      mu_y = F.normalize(self.mu_y, dim=1)
      ln_prior = F.log_softmax(PRIOR_TEMPERATURE * self.prior_logits, dim=0)
      ln_p_x = F.log_softmax(kappa * F.normalize(features, dim=1) @ mu_z.T + ln_prior, dim=1)
      label_logits = nu * mu_y @ mu_z.T  # (C_y, C_l)
      if likelihood == "a":
        return ln_p_x + F.log_softmax(label_logits, dim=0)[given]
      feature_logits = nu * features @ mu_y.T  # (B, C_y)
      feature_max = feature_logits.max(dim=1, keepdim=True).values
      label_max = label_logits.max(dim=0, keepdim=True).values
      log_normalizer = (
          feature_max
          + label_max
          + torch.log(torch.exp(feature_logits - feature_max) @ torch.exp(label_logits - label_max))
      )
      given_logits = label_logits[given] + feature_logits.gather(1, given[:, None])
      return ln_p_x + given_logits - log_normalizer

  return TorchVibeHead()


class TorchTrainer:
  """The same M-step in PyTorch: SGD(momentum 0.9, weight_decay 5e-4), two lr groups."""

  def __init__(
      self,
      inputs,
      given,
      pseudo,
      num_classes: int,
      likelihood: str,
      backbone=None,
      feature_dim: int = FEATURE_DIM,
      batch_size: int = BATCH_SIZE,
      head=None,
  ):
    import torch

    torch.manual_seed(0)
    self.torch = torch
    self.backbone = backbone
    self.head = head if head is not None else torch_head(num_classes, feature_dim, likelihood)
    groups = [
        {"params": [self.head.mu_z, self.head.mu_y], "lr": LR},
        {"params": [self.head.prior_logits], "lr": PRIOR_LR},
    ]
    if backbone is not None:
      backbone.train()
      groups[0]["params"] = groups[0]["params"] + list(backbone.parameters())
    self.optimizer = torch.optim.SGD(groups, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    self.inputs = torch.from_numpy(inputs)
    self.given = torch.from_numpy(given).long()
    self.pseudo = torch.from_numpy(pseudo).long()
    self.batch_size = batch_size
    self.steps_per_epoch = len(inputs) // batch_size
    self.generator = torch.Generator().manual_seed(0)
    self.step = 0
    self.permutation = None

  def run(self, num_steps: int) -> tuple[float, float]:
    torch = self.torch
    start = time.perf_counter()
    loss_sum = torch.zeros(())
    for _ in range(num_steps):
      position = self.step % self.steps_per_epoch
      if position == 0 or self.permutation is None:
        self.permutation = torch.randperm(len(self.inputs), generator=self.generator)
      indices = self.permutation[position * self.batch_size : (position + 1) * self.batch_size]
      batch = self.inputs[indices]
      features = batch if self.backbone is None else self.backbone(batch)
      scores = self.head.ln_joint(features, self.given[indices])
      loss = -scores.gather(1, self.pseudo[indices][:, None]).mean()
      self.optimizer.zero_grad(set_to_none=True)
      loss.backward()
      self.optimizer.step()
      loss_sum += loss.detach()
      self.step += 1
    return time.perf_counter() - start, float(loss_sum) / max(num_steps, 1)


def torch_resnet18_cifar(width: int = 64):
  """ResNet-18 with solo-learn's CIFAR stem (3x3 conv, stride 1, padding 2, no max-pool),
  torchvision block layout, no fc: (B, 3, 32, 32) -> (B, 8 width)."""
  import torch
  from torch import nn

  class BasicBlock(nn.Module):

    def __init__(self, in_channels, channels, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(channels)
      self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(channels)
      self.downsample = None
      if stride != 1 or in_channels != channels:
        self.downsample = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
        )

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      return torch.relu(y + (x if self.downsample is None else self.downsample(x)))

  class ResNet18(nn.Module):

    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(3, width, 3, 1, 2, bias=False)
      self.bn1 = nn.BatchNorm2d(width)
      layers, in_channels = [], width
      for stage, channels in enumerate((width, 2 * width, 4 * width, 8 * width)):
        blocks = []
        for index in range(2):
          blocks.append(BasicBlock(in_channels, channels, 2 if stage and not index else 1))
          in_channels = channels
        layers.append(nn.Sequential(*blocks))
      self.layers = nn.Sequential(*layers)

    def forward(self, x):
      x = torch.relu(self.bn1(self.conv1(x)))
      return self.layers(x).mean(dim=(2, 3))

  return ResNet18()


# ----------------------------------------------------------------------------- ResNet (ours)


def jax_resnet18_cifar(width: int = 64):
  """vibe_jax's ResNet-18 (CIFAR stem), fresh, in train mode; (backbone, feature dim)."""
  from vibe_jax.models.backbone import build_backbone

  resnet = build_backbone("resnet18", "cifar", width)
  return resnet, resnet.feature_dim


# ----------------------------------------------------------------------------- tables


def _throughput(trainer, steps: int, batch_size: int, warmup_steps: int):
  warm_seconds, _ = trainer.run(warmup_steps)
  seconds, loss = trainer.run(steps)
  return steps * batch_size / seconds, seconds / steps, warm_seconds, loss


def run(
    quick: bool = False,
    steps: int | None = None,
    resnet_steps: int | None = None,
    resnet_batch: int | None = None,
    resnet_device_loop: bool = False,
    log=print,
) -> dict:
  """Frozen-feature and ResNet-18 tables; {'tables', 'facts', 'resnet'}."""
  steps = steps or (50 if quick else 1000)
  resnet_steps = resnet_steps or (1 if quick else 3)
  resnet_batch = resnet_batch or (8 if quick else BATCH_SIZE)
  num_samples = 2_000 if quick else NUM_SAMPLES
  cases = FROZEN_CASES[:1] if quick else FROZEN_CASES
  table = common.Table(
      f"M-step throughput, frozen features (N = {num_samples:,}, D = 512, batch "
      f"{BATCH_SIZE}, {steps} steps timed after a warm-up)",
      [
          "C",
          "likelihood",
          "implementation",
          "samples/s",
          "ms/step",
          "vs torch",
          "warm-up (compile)",
          "mean loss",
      ],
  )
  facts = []
  for num_classes, likelihood in cases:
    features, given, pseudo = frozen_problem(num_samples, num_classes)
    log(f"M-step C={num_classes} likelihood={likelihood}  (load {common.load_average()})")
    results = {}
    torch_trainer = TorchTrainer(features, given, pseudo, num_classes, likelihood)
    results["torch"] = _throughput(torch_trainer, steps, BATCH_SIZE, warmup_steps=10)
    ours = OursTrainer(features, given, pseudo, num_classes, likelihood)
    results["ours (vibe_jax M-step)"] = _throughput(ours, steps, BATCH_SIZE, warmup_steps=1)
    torch_rate = results["torch"][0]
    for name, (rate, per_step, warm, loss) in results.items():
      table.add(
          num_classes,
          likelihood,
          name,
          f"{rate:,.0f}",
          f"{1e3 * per_step:.2f}",
          "-" if name == "torch" else f"{rate / torch_rate:.2f}x",
          common.fmt_seconds(warm),
          f"{loss:.4f}",
      )
      log(f"  {name}: {rate:,.0f} samples/s")
    facts.append(
        {
            "C": num_classes,
            "likelihood": likelihood,
            **{
                name: {"samples_per_s": r[0], "ms_per_step": 1e3 * r[1]}
                for name, r in results.items()
            },
        }
    )
  table.notes += [
      "warm-up: ours' first call (1 step) includes the XLA compile; torch's 10 steps.",
      "Both single-threaded when run with --threads 1 (the default here).",
      "Same initial parameters and formulas; the mean losses differ a little because the "
      "batch order differs (jax.random vs torch.randperm).",
  ]

  resnet_table, resnet_facts = run_resnet(
      quick, resnet_steps, resnet_batch, resnet_device_loop, log
  )
  return {"tables": [table, resnet_table], "facts": facts, "resnet": resnet_facts}


def run_resnet(
    quick: bool, steps: int, batch_size: int, device_loop_row: bool = False, log=print
) -> tuple[common.Table, dict]:
  """ResNet-18 (CIFAR stem) fine-tuning steps, ours vs torch, on random 32x32 images.

  `device_loop_row` adds the compiled loop (host_loop=False), off by default: on XLA:CPU it runs
  several times slower than the per-step calls loop.fit makes, and takes minutes a step.
  """
  width = 8 if quick else 64  # quick: a narrow ResNet-18, only to exercise the code
  table = common.Table(
      f"M-step throughput, ResNet-18 (CIFAR stem{', width 8' if quick else ''}) fine-tuning, "
      f"batch {batch_size} of 32x32, {steps} steps timed after 1 warm-up step",
      ["implementation", "samples/s", "s/step", "vs torch", "warm-up (compile)"],
  )
  log(f"ResNet-18 width {width}, batch {batch_size}  (load {common.load_average()})")
  rng = np.random.default_rng(0)
  num_images = max(2 * batch_size, 16 if quick else 512)
  images = rng.standard_normal((num_images, 32, 32, 3)).astype(np.float32)
  given = rng.integers(10, size=num_images).astype(np.int32)
  pseudo = given.copy()
  torch_trainer = TorchTrainer(
      np.ascontiguousarray(images.transpose(0, 3, 1, 2)),
      given,
      pseudo,
      10,
      "a",
      backbone=torch_resnet18_cifar(width),
      feature_dim=8 * width,
      batch_size=batch_size,
  )
  rows = [("torch", _throughput(torch_trainer, steps, batch_size, warmup_steps=1))]
  log(f"  torch: {rows[-1][1][0]:,.1f} samples/s")
  variants = [("ours (M-step, one call per step)", False)]
  if device_loop_row:
    variants.append(("ours, device_loop=True (diagnostic)", True))
  for name, device_loop in variants:
    backbone, feature_dim = jax_resnet18_cifar(width)
    ours = OursTrainer(
        images,
        given,
        pseudo,
        10,
        "a",
        backbone=backbone,
        feature_dim=feature_dim,
        batch_size=batch_size,
        device_loop=device_loop,
    )
    rows.append((name, _throughput(ours, steps, batch_size, warmup_steps=1)))
    log(f"  {name}: {rows[-1][1][0]:,.1f} samples/s")
  torch_rate = rows[0][1][0]
  for name, (rate, per_step, warm, _) in rows:
    table.add(
        name,
        f"{rate:,.1f}",
        f"{per_step:.2f}",
        "-" if name == "torch" else f"{rate / torch_rate:.2f}x",
        common.fmt_seconds(warm),
    )
  table.notes += [
      "backbone: vibe_jax.models.resnet.ResNet (build_backbone) vs the PyTorch ResNet-18 "
      "above; BatchNorm in train mode on both sides; SGD as above on all parameters; no "
      "augmentation. warm-up: one step (ours: includes the XLA compile).",
      "ours runs engine.run_steps(host_loop=True), as the EM loop does for backbones (XLA:CPU "
      "compiles the convolutions inside one fori_loop to slower kernels; "
      "`python -m benchmarks.mstep --resnet-device-loop` adds that variant as a row).",
  ]
  facts = {name: {"samples_per_s": r[0], "s_per_step": r[1]} for name, r in rows}
  return table, facts


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--steps", type=int, default=None, help="timed M-steps (frozen path)")
  parser.add_argument("--resnet-steps", type=int, default=None)
  parser.add_argument("--resnet-batch", type=int, default=None)
  parser.add_argument(
      "--resnet-device-loop",
      action="store_true",
      help="also time the ResNet steps in one device loop (slow on CPU)",
  )
  parser.add_argument("--threads", type=int, default=common.default_threads())
  args = parser.parse_args(argv)
  common.configure_threads(args.threads)
  common.set_torch_threads(args.threads)
  out = run(
      quick=args.quick,
      steps=args.steps,
      resnet_steps=args.resnet_steps,
      resnet_batch=args.resnet_batch,
      resnet_device_loop=args.resnet_device_loop,
  )
  for table in out["tables"]:
    print(table.text())


if __name__ == "__main__":
  main()
