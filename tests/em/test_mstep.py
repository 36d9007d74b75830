"""The M-step optimiser against PyTorch's SGD semantics, written out in numpy."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from vibe_jax import engine
from vibe_jax.em import mstep
from vibe_jax.models.vibe import VibeHead, VibeModel


def train_config(**overrides):
  values = dict(lr=0.05, prior_lr=0.5, momentum=0.9, weight_decay=5e-4)
  values.update(overrides)
  return ml_collections.ConfigDict(values)


def numpy_sgd(param, grads, lrs, momentum, weight_decay):
  """torch.optim.SGD: d = g + wd * p; buf = momentum * buf + d; p -= lr_t * buf."""
  buf = None
  for grad, lr in zip(grads, lrs, strict=True):
    d = grad + weight_decay * param
    buf = d if buf is None else momentum * buf + d
    param = param - lr * buf
  return param


def numpy_lrs(lr, schedule, steps, count):
  """Constant, or torch's CosineAnnealingLR to 0 over `steps`: lr (1 + cos(pi t / T)) / 2."""
  if schedule == "constant":
    return [lr] * count
  return [lr * (1 + np.cos(np.pi * t / steps)) / 2 for t in range(count)]


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_optimizer_matches_torch_sgd_per_group(schedule):
  head = VibeHead(
      3, 4, kappa=10.0, nu=10.0, prior_temperature=0.02, likelihood="a", rngs=nnx.Rngs(0)
  )
  _, params = nnx.split(head, nnx.Param)
  config = train_config(schedule=schedule, steps=4)
  optimizer = mstep.make_optimizer(config, params)
  state = optimizer.init(params)
  rng = np.random.default_rng(0)
  grads_seq = [
      jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
      for _ in range(3)
  ]
  current = params
  for grads in grads_seq:
    updates, state = optimizer.update(grads, state, current)
    current = jax.tree.map(lambda p, u: p + u, current, updates)
  for name, lr in [("mu_z", 0.05), ("mu_y", 0.05), ("prior_logits", 0.5)]:
    expected = numpy_sgd(
        np.asarray(params[name][...]),
        [np.asarray(g[name][...]) for g in grads_seq],
        numpy_lrs(lr, schedule, 4, 3),
        0.9,
        5e-4,
    )
    np.testing.assert_allclose(np.asarray(current[name][...]), expected, rtol=1e-5, atol=1e-6)
  # What the training log reports at step t: the rate of update t.
  logged = [mstep.learning_rates(config, step=t) for t in range(4)]
  np.testing.assert_allclose([r["lr"] for r in logged], numpy_lrs(0.05, schedule, 4, 4), rtol=1e-6)
  np.testing.assert_allclose([r["prior_lr"] for r in logged], numpy_lrs(0.5, schedule, 4, 4))


def test_frozen_mu_y_stays_put():
  head = VibeHead(
      3, 4, kappa=10.0, nu=10.0, prior_temperature=0.02, likelihood="a", rngs=nnx.Rngs(0)
  )
  _, params = nnx.split(head, nnx.Param)
  optimizer = mstep.make_optimizer(train_config(), params, train_mu_y=False)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  assert not np.asarray(updates["mu_y"][...]).any()
  assert np.asarray(updates["mu_z"][...]).any()


def test_batches_are_epochs_without_replacement():
  key = jax.random.key(0)
  seen = np.concatenate(
      [np.asarray(engine.batch_indices(key, jnp.asarray(s), 40, 8)) for s in range(5)]
  )
  np.testing.assert_array_equal(np.sort(seen), np.arange(40))
  again = np.asarray(engine.batch_indices(key, jnp.asarray(3), 40, 8))
  np.testing.assert_array_equal(again, seen[24:32])  # a pure function of (key, step)


def _head_and_data(seed):
  rng = np.random.default_rng(seed)
  features = jnp.asarray(rng.normal(size=(64, 5)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 3, size=64))
  head = VibeHead(
      3, 5, kappa=10.0, nu=10.0, prior_temperature=0.02, likelihood="f", rngs=nnx.Rngs(0)
  )
  graphdef, params, rest = nnx.split(VibeModel(head), nnx.Param, ...)
  optimizer = mstep.make_optimizer(train_config(lr=0.1), params)
  step_fn = mstep.MStep(
      graphdef=graphdef, optimizer=optimizer, objective="vibe", batch_size=16, num_samples=64
  )
  state = mstep.MStepState.start(params, rest, optimizer.init(params), 64)
  inputs = mstep.MStepInputs(features, labels, labels, jax.random.key(0))
  return step_fn, state, inputs


def test_msteps_reduce_the_vibe_loss():
  step_fn, state, inputs = _head_and_data(1)
  losses = []
  for start in (0, 50):
    state, metrics = engine.run_steps(step_fn, state, inputs, start, 50, host_loop=False)
    losses.append(metrics["loss"])
  assert losses[1] < losses[0]


def test_compiled_loop_and_per_step_calls_agree():
  """The engine's two ways of running steps take the same steps, also from a chunk that
  starts mid-epoch (the carried epoch order is redrawn on the first step)."""
  results = []
  for host_loop in (False, True):
    step_fn, state, inputs = _head_and_data(2)
    state, metrics = engine.run_steps(step_fn, state, inputs, 3, 7, host_loop=host_loop)
    results.append((metrics["loss"], np.asarray(state.params["head"]["mu_z"][...])))
  assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
  np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)


def test_carried_epoch_order_gives_the_batches_of_batch_indices():
  """MStep's carried permutation draws the batches engine.batch_indices defines, across an
  epoch boundary (64 rows / 16 = 4 steps an epoch)."""
  step_fn, state, inputs = _head_and_data(3)
  jitted = jax.jit(step_fn)  # one compile instead of dispatching each op of each step
  for step in range(3, 10):
    state, _ = jitted(inputs, jnp.int32(step), state)
    expected = engine.batch_indices(inputs.key, jnp.int32(step), 64, 16)
    position = step % 4
    np.testing.assert_array_equal(
        np.asarray(state.permutation[position * 16 : (position + 1) * 16]), np.asarray(expected)
    )
