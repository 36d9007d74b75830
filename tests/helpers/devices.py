"""One process on eight virtual CPU devices (the device count is fixed at start-up), running
what the device tests compare; prints one JSON line.

  python tests/helpers/devices.py [METHOD ...]

- estep: the share of pseudo-labels on which the E-step of 8-way sharded ln P and the
  unsharded one agree;
- ssl: SSL pretraining (SimCLR, and any METHOD given) on one device and over four: loss
  records, the largest difference of the trained weights, the error a batch that does not
  divide gives; and the batch sizes SimCLR's compiled step convolves on each device.
"""

import functools
import json
import os
import re
import sys

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ["JAX_PLATFORMS"] = "cpu"
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(TESTS))
sys.path.append(TESTS)  # last: tests/ holds folders named like modules

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

from helpers.tiny import TinyBackbone, tiny_ssl  # noqa: E402
from vibe_jax import engine, parallel  # noqa: E402
from vibe_jax.em.estep import sinkhorn_pseudo_labels  # noqa: E402
from vibe_jax.ssl import augment, methods, simclr, training  # noqa: E402

# Crops, flips, grey: per-image draws, as sharded as jitter's (left out: its four branches
# under vmap make up most of a step's compile time).
AUGMENT = augment.AugmentConfig(crop_scale=(0.5, 1.0), jitter_prob=0.0)


def estep() -> float:
  rng = np.random.default_rng(0)
  ln_p = np.log(rng.dirichlet(np.full(7, 0.4), size=4000)).astype(np.float32)
  prior = rng.dirichlet(np.full(7, 5.0)).astype(np.float32)
  sharding = NamedSharding(parallel.make_mesh(8), PartitionSpec(parallel.DATA_AXIS))
  sharded = jax.device_put(ln_p, sharding)
  a, _ = sinkhorn_pseudo_labels(jnp.asarray(ln_p), jnp.asarray(prior))
  b, _ = sinkhorn_pseudo_labels(sharded, jnp.asarray(prior))
  assert len(b.sharding.device_set) == 8
  return float(np.mean(np.asarray(a) == np.asarray(b)))


def fit(method_name: str, mesh, batch_size: int = 16):
  ssl = tiny_ssl(
      6,
      method=method_name,
      batch_size=batch_size,
      predictor_hidden_dim=16,
      queue_size=32,
      log_every=3,
  )
  method = methods.METHODS.get(method_name)
  images = np.random.default_rng(4).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
  model, history = method.fit(
      method.build(TinyBackbone(nnx.Rngs(0)), ssl, 1),
      images,
      ssl,
      augment_config=AUGMENT,
      mean=(0.5,) * 3,
      std=(0.25,) * 3,
      seed=0,
      host_loop=True,
      mesh=mesh,
  )
  return history, [np.asarray(leaf) for leaf in jax.tree.leaves(nnx.state(model.backbone))]


def convolved_batch_sizes(mesh) -> list[int]:
  """Leading sizes of the (n, 16, 16, 8) conv activations in SimCLR's compiled step: at most
  2B / 4 = 8 per device when the step is really partitioned, 2B = 32 when it is not."""
  ssl = tiny_ssl(6)
  model = methods.METHODS.get("simclr").build(TinyBackbone(nnx.Rngs(0)), ssl, 1)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  optimizer = training.make_optimizer(ssl)
  step_fn = functools.partial(simclr._step, graphdef, optimizer, 16, AUGMENT)
  images = np.zeros((32, 16, 16, 3), np.uint8)
  inputs = training.StepInputs(
      jnp.asarray(images), jax.random.key(0), jnp.float32(0.2), jnp.zeros(3), jnp.ones(3)
  )
  state, inputs = parallel.replicate_tree(((params, rest, optimizer.init(params)), inputs), mesh)
  with jax.set_mesh(mesh):
    lowered = engine.compiled_step.lower(step_fn, state, inputs, jnp.asarray(0))
    text = lowered.compile().as_text()
  return sorted({int(n) for n in re.findall(r"f32\[(\d+),16,16,8\]", text)})


def ssl(method_names: list[str]) -> dict:
  mesh = parallel.make_mesh(4)
  out = {"convolved_batch_sizes": convolved_batch_sizes(mesh)}
  for name in method_names:
    single, single_weights = fit(name, None)
    sharded, sharded_weights = fit(name, mesh)
    try:
      fit(name, mesh, batch_size=6)
      error = ""
    except ValueError as e:
      error = str(e)
    out[name] = {
        "single": single,
        "sharded": sharded,
        "max_weight_difference": max(
            float(np.max(np.abs(a - b))) for a, b in zip(single_weights, sharded_weights)
        ),
        "error": error,
    }
  return out


def main() -> None:
  print(json.dumps({"estep": estep(), "ssl": ssl(["simclr", *sys.argv[1:]])}))


if __name__ == "__main__":
  main()
