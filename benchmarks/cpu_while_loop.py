"""The engine's CPU policy, measured: one M-step of a convolutional backbone run as one
compiled call per step (host loop) vs inside one compiled `fori_loop` (vibe_jax.engine).

  python -m benchmarks.cpu_while_loop [--width 16] [--batch 128] [--steps 2]

The defaults are the digits SS schedule's step (ResNet-18 width 16, ImageNet stem, batch 128
of 32x32 images, configs/common.digits_config). Both loops take the same steps (same state
and inputs), so the seconds per step compare how XLA compiles the one step function.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks import common


def seconds_per_step(host_loop: bool, width: int, batch: int, steps: int) -> tuple[float, float]:
  """(warm-up seconds incl. compile, seconds per step after it) of the engine's M-step."""
  import jax
  import ml_collections
  from flax import nnx

  from vibe_jax import engine
  from vibe_jax.em import mstep
  from vibe_jax.models import build_backbone
  from vibe_jax.models.vibe import VibeHead, VibeModel

  backbone = build_backbone("resnet18", "imagenet", width)
  dim = 8 * width
  head = VibeHead(
      10, dim, kappa=10.0, nu=10.0, prior_temperature=0.02, likelihood="a", rngs=nnx.Rngs(0)
  )
  graphdef, params, rest = nnx.split(VibeModel(head, backbone), nnx.Param, ...)
  optimizer_config = ml_collections.ConfigDict(
      {"lr": 0.01, "prior_lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
  )
  optimizer = mstep.make_optimizer(optimizer_config, params)
  num_samples = 4 * batch
  rng = np.random.default_rng(0)
  images = rng.standard_normal((num_samples, 32, 32, 3)).astype(np.float32)
  labels = rng.integers(10, size=num_samples).astype(np.int32)
  step_fn = mstep.MStep(graphdef, optimizer, "vibe", batch, num_samples)
  state = mstep.MStepState.start(params, rest, optimizer.init(params), num_samples)
  inputs = mstep.MStepInputs(images, labels, labels, jax.random.key(0))
  start = time.perf_counter()
  state, _ = engine.run_steps(step_fn, state, inputs, 0, 1, host_loop=host_loop)
  warm = time.perf_counter() - start
  start = time.perf_counter()
  engine.run_steps(step_fn, state, inputs, 1, steps, host_loop=host_loop)
  return warm, (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> common.Table:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--width", type=int, default=16)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--steps", type=int, default=2)
  args = parser.parse_args(argv)
  table = common.Table(
      f"XLA:CPU, M-step of a ResNet-18 (width {args.width}, ImageNet stem), batch "
      f"{args.batch} of 32x32: host loop vs compiled fori_loop ({args.steps} steps timed)",
      ["engine loop", "s/step", "vs host loop", "first call (compile)"],
  )
  host = seconds_per_step(True, args.width, args.batch, args.steps)
  compiled = seconds_per_step(False, args.width, args.batch, args.steps)
  table.add("host loop (one compiled call per step)", f"{host[1]:.2f}", "1.00x", f"{host[0]:.1f} s")
  table.add(
      "one compiled fori_loop",
      f"{compiled[1]:.2f}",
      f"{compiled[1] / host[1]:.2f}x",
      f"{compiled[0]:.1f} s",
  )
  table.notes.append(f"load average at the end: {common.load_average()}")
  print(table.text())
  return table


if __name__ == "__main__":
  main()
