"""SimCLR: projector head, NT-Xent loss, its step and `fit` (the loop is training.py's).

Both views of a batch go through the network as one 2B batch, so BatchNorm sees both views
together (solo-learn forwards each view separately; the difference is the BN batch only).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from vibe_jax.models.resnet import ResNet
from vibe_jax.normalize import l2_normalize
from vibe_jax.ssl import training
from vibe_jax.ssl.augment import AugmentConfig

__all__ = ["Projector", "SimCLRModel", "fit", "nt_xent_loss"]


class Projector(nnx.Module):
  """Linear-BN-ReLU-Linear, solo-learn's SimCLR projector (2048/256 at full width)."""

  def __init__(self, in_features: int, hidden_dim: int, output_dim: int, *, rngs: nnx.Rngs) -> None:
    self.linear1 = nnx.Linear(in_features, hidden_dim, rngs=rngs)
    self.bn = training.batch_norm(hidden_dim, rngs=rngs)
    self.linear2 = nnx.Linear(hidden_dim, output_dim, rngs=rngs)

  def __call__(self, features: jax.Array) -> jax.Array:
    return self.linear2(nnx.relu(self.bn(self.linear1(features))))


class SimCLRModel(nnx.Module):
  """A backbone (kept afterwards) and a projector (discarded after pretraining)."""

  def __init__(self, backbone: ResNet, hidden_dim: int, output_dim: int, *, rngs: nnx.Rngs) -> None:
    self.backbone = backbone
    self.projector = Projector(backbone.feature_dim, hidden_dim, output_dim, rngs=rngs)

  def __call__(self, images: jax.Array) -> jax.Array:
    return self.projector(self.backbone(images))


def nt_xent_loss(z1: jax.Array, z2: jax.Array, temperature: float | jax.Array) -> jax.Array:
  """SimCLR's NT-Xent: mean cross-entropy of each of the 2B embeddings picking its pair.

  Cosine similarities over `temperature`; each row's candidates are the other 2B - 1
  embeddings (itself excluded), the positive being the other view of the same image.
  Not optax.ntxent: it agrees (to 1e-7) but broadcasts to (2B, 2B, D) for the cosines,
  0.8 GB of temporaries and ~180x slower at batch 256, dimension 256 (CPU).
  """
  z = l2_normalize(jnp.concatenate([z1, z2]).astype(jnp.float32))
  count = z.shape[0]
  half = count // 2
  logits = jnp.matmul(z, z.T, precision=jax.lax.Precision.HIGHEST) / temperature
  logits = jnp.where(jnp.eye(count, dtype=bool), -jnp.inf, logits)
  positives = jnp.concatenate([jnp.arange(half, count), jnp.arange(0, half)])
  positive_logits = logits[jnp.arange(count), positives]
  return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - positive_logits)


def _step(
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    augment_config: AugmentConfig,
    inputs: training.StepInputs,
    step: jax.Array,
    state: tuple[nnx.State, nnx.State, optax.OptState],
) -> tuple[tuple[nnx.State, nnx.State, optax.OptState], dict[str, jax.Array]]:
  """One SimCLR step: batch `step`, two views, NT-Xent, optimiser update."""
  params, rest, opt_state = state
  views = training.batch_views(inputs, step, batch_size, augment_config)

  def loss_fn(params, rest):
    # copy=True: fresh Variables at grad's trace level, so BatchNorm may update its
    # running statistics (merging `rest` as-is raises TraceContextError under grad).
    model = nnx.merge(graphdef, params, rest, copy=True)
    embeddings = model(views)
    loss = nt_xent_loss(embeddings[:batch_size], embeddings[batch_size:], inputs.temperature)
    return loss, nnx.state(model, nnx.Not(nnx.Param))

  (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return (optax.apply_updates(params, updates), rest, opt_state), {"loss": loss}


def fit(
    model: SimCLRModel,
    images: np.ndarray | jax.Array,
    ssl: ml_collections.ConfigDict,
    *,
    augment_config: AugmentConfig,
    mean: Sequence[float],
    std: Sequence[float],
    seed: int,
    log: Callable[[dict], None] = lambda record: None,
    desc: str = "simclr",
    host_loop: bool | None = None,
    mesh: Mesh | None = None,
) -> tuple[SimCLRModel, list[dict]]:
  """Trains `model` (train mode) for ssl.steps steps; returns it and the loss history.

  One record {"step", "loss", "lr"} per chunk of ssl.log_every steps (the chunk's mean
  loss) goes to `log` and to the returned history (training.run_loop). The input model's
  arrays may be donated: use the returned model. With a `mesh`, data parallel over its
  devices (training.run_loop).
  """
  training.check_batch_size(ssl, images.shape[0], mesh)
  model.train()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  optimizer = training.make_optimizer(ssl)
  step_fn = functools.partial(_step, graphdef, optimizer, ssl.batch_size, augment_config)
  (params, rest, _), history = training.run_loop(
      step_fn,
      (params, rest, optimizer.init(params)),
      images,
      ssl,
      mean=mean,
      std=std,
      seed=seed,
      log=log,
      desc=desc,
      host_loop=host_loop,
      mesh=mesh,
      name="SimCLR",
  )
  return nnx.merge(graphdef, params, rest), history
