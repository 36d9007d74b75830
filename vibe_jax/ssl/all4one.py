"""All4One (Estepa et al., ICCV 2023) as solo-learn implements it: heads, losses, queue, step.

The online network (backbone, projector, predictor, predictor2, transformer encoder) is
trained; a momentum copy of backbone and projector follows it by an exponential moving
average whose tau rises from ssl.base_tau to ssl.final_tau on a cosine over the run. A FIFO
queue of past momentum projections (ssl.queue_size rows, first view only) supplies each
image's 5 nearest neighbours. Three objectives, with solo-learn's weights:

  loss = 0.5 * centroid + 0.5 * nnclr + 0.5 * 10 * redundancy

- nnclr: NNCLR's contrastive loss between the first neighbour of one view and the predictor
  output of the other (temperature ssl.temperature), symmetrised;
- centroid: the same loss (temperature 0.1, nnclr_loss_func's default, which solo-learn's
  call keeps) between the transformer encoder's first output token over one view's
  neighbour set and its first token over the other view's "shifted" set (predictor2's output
  followed by the first 4 neighbours), symmetrised;
- redundancy: an RMS of the cross-correlation between momentum and online projections of the
  two views, features normalised over the batch: diagonal to 1, off-diagonal to 0.

Everything else (data, views, optimisers, schedule, loop) is shared with SimCLR
(training.py), and so is the checkpoint. Batches and views are pure functions of (seed,
step); so is the transformer's dropout. Each view goes through the networks on its own, so
BatchNorm normalises per view as in solo-learn.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

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

__all__ = [
    "AUGMENT",
    "All4OneModel",
    "All4OneState",
    "MomentumEncoder",
    "Predictor",
    "Projector",
    "TransformerEncoder",
    "centroid_loss",
    "ema_update",
    "enqueue",
    "fit",
    "loss_terms",
    "make_optimizer",
    "momentum_tau",
    "nearest_neighbours",
    "nnclr_loss",
    "positional_encoding",
    "redundancy_loss",
    "validate",
]

# Fixed in solo-learn's All4One (not configurable there either).
NUM_NEIGHBOURS = 5  # find_nn's topk, and the positional encoding's sequence length
ATTENTION_HEADS = 8
TRANSFORMER_LAYERS = 3
TRANSFORMER_DROPOUT = 0.1
CENTROID_TEMPERATURE = 0.1
REDUNDANCY_SCALE = 10.0
WEIGHTS = {"centroid": 0.5, "nnclr": 0.5, "redundancy": 0.5}
# solo-learn's CIFAR All4One augmentations (asymmetric.yaml) beyond crop and flip: colour
# jitter (0.4, 0.4, 0.2, 0.1) on both views, solarisation with p 0.2 on the second only.
_JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1}
AUGMENT = (_JITTER, {**_JITTER, "solarize_prob": 0.2})
_DROPOUT_STREAM = 0xA41  # folded into the seed's key: dropout draws apart from batches/views


class Projector(nnx.Module):
  """Linear-BN-ReLU-Linear-BN-ReLU-Linear-BN (solo-learn's All4One projector, 2048/256)."""

  def __init__(self, in_features: int, hidden_dim: int, output_dim: int, *, rngs: nnx.Rngs) -> None:
    self.linear1 = nnx.Linear(in_features, hidden_dim, rngs=rngs)
    self.bn1 = training.batch_norm(hidden_dim, rngs=rngs)
    self.linear2 = nnx.Linear(hidden_dim, hidden_dim, rngs=rngs)
    self.bn2 = training.batch_norm(hidden_dim, rngs=rngs)
    self.linear3 = nnx.Linear(hidden_dim, output_dim, rngs=rngs)
    self.bn3 = training.batch_norm(output_dim, rngs=rngs)

  def __call__(self, features: jax.Array) -> jax.Array:
    hidden = nnx.relu(self.bn1(self.linear1(features)))
    hidden = nnx.relu(self.bn2(self.linear2(hidden)))
    return self.bn3(self.linear3(hidden))


class Predictor(nnx.Module):
  """Linear-BN-ReLU-Linear (solo-learn's predictor and predictor2, hidden 4096)."""

  def __init__(self, dim: int, hidden_dim: int, *, rngs: nnx.Rngs) -> None:
    self.linear1 = nnx.Linear(dim, hidden_dim, rngs=rngs)
    self.bn = training.batch_norm(hidden_dim, rngs=rngs)
    self.linear2 = nnx.Linear(hidden_dim, dim, rngs=rngs)

  def __call__(self, z: jax.Array) -> jax.Array:
    return self.linear2(nnx.relu(self.bn(self.linear1(z))))


def _dropout(key: jax.Array | None, x: jax.Array, rate: float) -> jax.Array:
  if key is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


class EncoderLayer(nnx.Module):
  """torch.nn.TransformerEncoderLayer's defaults: post-norm, ReLU, dropout on the attention
  weights, after attention, inside and after the feed-forward block; LayerNorm eps 1e-5.

  `in_proj` holds query, key and value projections side by side (PyTorch's in_proj_weight,
  transposed), so weights carry over one to one.
  """

  def __init__(self, dim: int, heads: int, ff_dim: int, *, rngs: nnx.Rngs) -> None:
    if dim % heads:
      raise ValueError(f"ssl.projector_output_dim={dim} must be a multiple of {heads} heads.")
    self.heads = heads
    self.in_proj = nnx.Linear(
        dim, 3 * dim, kernel_init=nnx.initializers.xavier_uniform(), rngs=rngs
    )
    self.out_proj = nnx.Linear(dim, dim, rngs=rngs)
    self.norm1 = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)
    self.linear1 = nnx.Linear(dim, ff_dim, rngs=rngs)
    self.linear2 = nnx.Linear(ff_dim, dim, rngs=rngs)
    self.norm2 = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)

  def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """x: (batch, length, dim); `key` None: no dropout (evaluation)."""
    keys = [None] * 4 if key is None else list(jax.random.split(key, 4))
    batch, length, dim = x.shape
    head_dim = dim // self.heads
    q, k, v = jnp.split(self.in_proj(x).reshape(batch, length, 3, self.heads, head_dim), 3, 2)
    q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]  # (batch, length, heads, head_dim)
    scores = jnp.einsum("blhd,bmhd->bhlm", q, k) / math.sqrt(head_dim)
    weights = _dropout(keys[0], jax.nn.softmax(scores, axis=-1), TRANSFORMER_DROPOUT)
    attended = jnp.einsum("bhlm,bmhd->blhd", weights, v).reshape(batch, length, dim)
    x = self.norm1(x + _dropout(keys[1], self.out_proj(attended), TRANSFORMER_DROPOUT))
    hidden = _dropout(keys[2], nnx.relu(self.linear1(x)), TRANSFORMER_DROPOUT)
    return self.norm2(x + _dropout(keys[3], self.linear2(hidden), TRANSFORMER_DROPOUT))


class TransformerEncoder(nnx.Module):
  """3 EncoderLayers (d_model = projector output, 8 heads, feed-forward 2 x d_model).

  torch.nn.TransformerEncoder deep-copies one layer, so its layers start equal; so do these
  (each is built from the same seed).
  """

  def __init__(self, dim: int, *, seed: int) -> None:
    self.layers = nnx.List(
        [
            EncoderLayer(dim, ATTENTION_HEADS, 2 * dim, rngs=nnx.Rngs(seed))
            for _ in range(TRANSFORMER_LAYERS)
        ]
    )

  def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
    for i, layer in enumerate(self.layers):
      x = layer(x, None if key is None else jax.random.fold_in(key, i))
    return x


def positional_encoding(length: int, dim: int) -> jax.Array:
  """The (length, dim) encoding solo-learn adds to the neighbour sets.

  solo-learn applies Summer(PositionalEncodingPermute1D(5)) to (batch, 5, dim) tensors: the
  sinusoid runs along the feature axis and the 5 set positions are its channels, i.e.
  pe[s, d] = sin(d * f_{s // 2}) for even s, cos(d * f_{s // 2}) for odd s, with
  f_j = 10000 ** (-2 j / c) and c = length rounded up to even.
  """
  channels = 2 * math.ceil(length / 2)
  inv_freq = 1.0 / 10000.0 ** (np.arange(0, channels, 2, dtype=np.float32) / channels)
  angles = np.arange(dim, dtype=np.float32)[:, None] * inv_freq[None, :]  # (dim, c / 2)
  interleaved = np.stack([np.sin(angles), np.cos(angles)], axis=-1).reshape(dim, channels)
  return jnp.asarray(interleaved[:, :length].T)


class MomentumEncoder(nnx.Module):
  """The momentum backbone and projector; outputs L2-normalised projections."""

  def __init__(self, backbone: nnx.Module, projector: Projector) -> None:
    self.backbone = backbone
    self.projector = projector

  def __call__(self, images: jax.Array) -> jax.Array:
    return l2_normalize(self.projector(self.backbone(images)), axis=-1)


class All4OneModel(nnx.Module):
  """The online network; `backbone` is what pretraining keeps."""

  def __init__(
      self,
      backbone: ResNet,
      projector_hidden_dim: int,
      projector_output_dim: int,
      predictor_hidden_dim: int,
      *,
      rngs: nnx.Rngs,
  ) -> None:
    self.backbone = backbone
    self.projector = Projector(
        backbone.feature_dim, projector_hidden_dim, projector_output_dim, rngs=rngs
    )
    self.predictor = Predictor(projector_output_dim, predictor_hidden_dim, rngs=rngs)
    self.predictor2 = Predictor(projector_output_dim, predictor_hidden_dim, rngs=rngs)
    seed = int(jax.random.randint(rngs.params(), (), 0, 2**31 - 1))
    self.transformer = TransformerEncoder(projector_output_dim, seed=seed)

  def __call__(self, images: jax.Array) -> jax.Array:
    return self.projector(self.backbone(images))

  def momentum_encoder(self) -> MomentumEncoder:
    """A copy of backbone and projector (solo-learn's initialize_momentum_params)."""
    return MomentumEncoder(nnx.clone(self.backbone), nnx.clone(self.projector))

  def losses(
      self,
      views: tuple[jax.Array, jax.Array],
      momentum_z: tuple[jax.Array, jax.Array],
      neighbours: tuple[jax.Array, jax.Array],
      temperature: float | jax.Array,
      dropout_key: jax.Array | None,
  ) -> dict[str, jax.Array]:
    """The loss terms of one step (loss_terms) from the two views' images, their momentum
    projections (B, D) and their neighbour sets (B, 5, D)."""
    z1, z2 = (self(x) for x in views)

    def encode(sets: jax.Array) -> jax.Array:
      # One (vmapped) encoder for the 4 sets instead of 4 inlined copies: the step compiles
      # in about half the time. Set i keeps its own dropout key, as 4 separate calls would.
      if dropout_key is None:
        return jax.vmap(self.transformer)(sets)
      return jax.vmap(self.transformer)(sets, jax.random.split(dropout_key, len(sets)))

    return loss_terms(
        z=(z1, z2),
        p=(self.predictor(z1), self.predictor(z2)),
        p2=(self.predictor2(z1), self.predictor2(z2)),
        momentum_z=momentum_z,
        neighbours=neighbours,
        transformer=encode,
        temperature=temperature,
    )


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def nnclr_loss(nn: jax.Array, p: jax.Array, temperature: float | jax.Array) -> jax.Array:
  """NNCLR's loss (solo-learn's nnclr_loss_func): cross-entropy of row i of the cosine
  similarities nn_i . p_j / temperature picking j = i."""
  nn = l2_normalize(nn.astype(jnp.float32), axis=-1)
  p = l2_normalize(p.astype(jnp.float32), axis=-1)
  logits = _dot(nn, p.T) / temperature
  return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - jnp.diagonal(logits))


def centroid_loss(
    rich: tuple[jax.Array, jax.Array], shifted: tuple[jax.Array, jax.Array]
) -> jax.Array:
  """The centroid term: NNCLR loss (temperature 0.1) between each view's encoded neighbour
  set and the other view's encoded shifted set, averaged over both directions."""
  return (
      nnclr_loss(rich[0], shifted[1], CENTROID_TEMPERATURE)
      + nnclr_loss(rich[1], shifted[0], CENTROID_TEMPERATURE)
  ) / 2


def redundancy_loss(
    momentum_z: tuple[jax.Array, jax.Array], z: tuple[jax.Array, jax.Array]
) -> jax.Array:
  """The feature-redundancy term before its scale 10: with columns L2-normalised over the
  batch, C1 = m1^T z2 and C2 = m2^T z1 (D x D); returns 0.5 * RMS(diag - 1) + 0.5 *
  RMS(off-diagonal), each RMS over both matrices."""

  def correlation(m, online):
    m = l2_normalize(m.astype(jnp.float32), axis=0)
    return _dot(m.T, l2_normalize(online.astype(jnp.float32), axis=0))

  c1, c2 = correlation(momentum_z[0], z[1]), correlation(momentum_z[1], z[0])
  dim = c1.shape[0]

  def on_off(c):
    diagonal = jnp.diagonal(c)
    on = jnp.mean((diagonal - 1.0) ** 2)
    off = (jnp.sum(c**2) - jnp.sum(diagonal**2)) / (dim * (dim - 1))
    return on, off

  (on1, off1), (on2, off2) = on_off(c1), on_off(c2)
  return 0.5 * jnp.sqrt(0.5 * (on1 + on2)) + 0.5 * jnp.sqrt(0.5 * (off1 + off2))


def loss_terms(
    *,
    z: tuple[jax.Array, jax.Array],
    p: tuple[jax.Array, jax.Array],
    p2: tuple[jax.Array, jax.Array],
    momentum_z: tuple[jax.Array, jax.Array],
    neighbours: tuple[jax.Array, jax.Array],
    transformer: Callable[[jax.Array], jax.Array],
    temperature: float | jax.Array,
) -> dict[str, jax.Array]:
  """All4One's objective from the heads' outputs (solo-learn's training_step).

  z: projections, p / p2: predictor / predictor2 outputs, momentum_z: normalised momentum
  projections, neighbours: (B, 5, D) queue rows nearest to momentum_z; transformer: the
  encoder applied to each of 4 stacked (B, 5, D) sets, (4, B, 5, D) -> (4, B, 5, D): the
  two neighbour sets, then the two shifted sets. Returns the total "loss" and its unweighted
  terms.
  """
  encoding = positional_encoding(NUM_NEIGHBOURS, z[0].shape[-1])
  # The "shift": predictor2's output takes the first place, the last neighbour drops out.
  shifted_sets = [
      jnp.concatenate([q[:, None], nn[:, : NUM_NEIGHBOURS - 1]], axis=1)
      for q, nn in zip(p2, neighbours)
  ]
  encoded = transformer(jnp.stack([*neighbours, *shifted_sets]) + encoding)[:, :, 0]
  rich, shifted = encoded[:2], encoded[2:]
  terms = {
      "centroid": centroid_loss(rich, shifted),
      "nnclr": (
          nnclr_loss(neighbours[0][:, 0], p[1], temperature)
          + nnclr_loss(neighbours[1][:, 0], p[0], temperature)
      )
      / 2,
      "redundancy": REDUNDANCY_SCALE * redundancy_loss(momentum_z, z),
  }
  return {"loss": sum(WEIGHTS[name] * value for name, value in terms.items()), **terms}


def nearest_neighbours(z: jax.Array, queue: jax.Array, k: int = NUM_NEIGHBOURS) -> jax.Array:
  """The k queue rows of largest dot product with each row of z, best first: (B, k, D)."""
  _, indices = jax.lax.top_k(_dot(z, queue.T), k)
  return queue[indices]


def enqueue(queue: jax.Array, pointer: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array]:
  """FIFO: writes the B rows of z at `pointer` (overwriting the oldest) and advances it by B
  modulo the queue size (which B divides, as solo-learn asserts)."""
  queue = jax.lax.dynamic_update_slice(queue, z.astype(queue.dtype), (pointer, 0))
  return queue, (pointer + z.shape[0]) % queue.shape[0]


def momentum_tau(
    step: jax.Array | int, total_steps: int, base_tau: float, final_tau: float
) -> jax.Array:
  """solo-learn's MomentumUpdater: tau = final - (final - base) (cos(pi step / total) + 1) / 2;
  base at step 0, final at step total. The update after step i uses tau(i)."""
  cosine = jnp.cos(jnp.pi * jnp.asarray(step, jnp.float32) / total_steps)
  return final_tau - (final_tau - base_tau) * (cosine + 1.0) / 2.0


def ema_update(momentum: nnx.State, online: nnx.State, tau: jax.Array) -> nnx.State:
  """momentum <- tau * momentum + (1 - tau) * online, leaf by leaf (same paths)."""
  paths, treedef = jax.tree_util.tree_flatten_with_path(momentum)
  online_paths, online_leaves = zip(*jax.tree_util.tree_flatten_with_path(online)[0])
  names = lambda path: tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
  if [names(p) for p, _ in paths] != [names(p) for p in online_paths]:
    raise ValueError("momentum and online networks differ in structure.")
  return jax.tree.unflatten(
      treedef, [tau * m + (1.0 - tau) * o for (_, m), o in zip(paths, online_leaves)]
  )


def _online_encoder_params(params: nnx.State) -> nnx.State:
  return nnx.State({"backbone": params["backbone"], "projector": params["projector"]})


def make_optimizer(ssl: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """training.make_optimizer for everything, except that the transformer encoder has its own
  peak learning rate ssl.transformer_lr (solo-learn's parameter group with lr 0.1), on the
  same warmup-cosine schedule."""
  transformer_ssl = ssl.copy_and_resolve_references()
  transformer_ssl.lr = ssl.transformer_lr

  def labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "transformer" if getattr(path[0], "key", None) == "transformer" else "rest",
        params,
    )

  return optax.multi_transform(
      {
          "rest": training.make_optimizer(ssl),
          "transformer": training.make_optimizer(transformer_ssl),
      },
      labels,
  )


class All4OneState(NamedTuple):
  """Everything a step carries: online and momentum networks, optimiser, queue."""

  params: nnx.State
  rest: nnx.State  # BatchNorm statistics of the online network
  momentum_params: nnx.State
  momentum_rest: nnx.State
  opt_state: optax.OptState
  queue: jax.Array  # (ssl.queue_size, D) past momentum projections, FIFO
  pointer: jax.Array  # where the next batch is written


def _step(
    graphdef: nnx.GraphDef,
    momentum_graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    augment_config: AugmentConfig,
    tau_schedule: tuple[int, float, float],
    inputs: training.StepInputs,
    step: jax.Array,
    state: All4OneState,
) -> tuple[All4OneState, dict[str, jax.Array]]:
  """One All4One step: momentum projections and their neighbours (before this step's
  enqueue), the losses, an optimiser update, the momentum update with tau(step), then the
  first view's momentum projections enter the queue."""
  views = training.batch_views(inputs, step, batch_size, augment_config)
  views = (views[:batch_size], views[batch_size:])
  momentum = nnx.merge(momentum_graphdef, state.momentum_params, state.momentum_rest)
  momentum_z = tuple(jax.lax.stop_gradient(momentum(x)) for x in views)
  momentum_rest = nnx.state(momentum, nnx.Not(nnx.Param))
  neighbours = tuple(nearest_neighbours(mz, state.queue) for mz in momentum_z)
  dropout_key = jax.random.fold_in(jax.random.fold_in(inputs.key, _DROPOUT_STREAM), step)

  def loss_fn(params, rest):
    model = nnx.merge(graphdef, params, rest, copy=True)  # see simclr._step for why copy=True
    terms = model.losses(views, momentum_z, neighbours, inputs.temperature, dropout_key)
    return terms["loss"], (terms, nnx.state(model, nnx.Not(nnx.Param)))

  (_, (terms, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state.rest)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  tau = momentum_tau(step, *tau_schedule)
  momentum_params = ema_update(state.momentum_params, _online_encoder_params(params), tau)
  queue, pointer = enqueue(state.queue, state.pointer, momentum_z[0])
  new_state = All4OneState(params, rest, momentum_params, momentum_rest, opt_state, queue, pointer)
  return new_state, {**terms, "tau": tau}


def validate(ssl: ml_collections.ConfigDict) -> None:
  """The All4One fields of config.ssl (pretrain.validate_ssl_config checks the shared ones)."""
  if ssl.projector_output_dim % ATTENTION_HEADS:
    raise ValueError(
        f"ssl.projector_output_dim={ssl.projector_output_dim} must be a multiple of "
        f"{ATTENTION_HEADS} (the transformer's heads)."
    )
  for field in ("predictor_hidden_dim", "transformer_lr"):
    if not ssl[field] > 0:
      raise ValueError(f"ssl.{field}={ssl[field]} must be positive.")
  if ssl.queue_size < NUM_NEIGHBOURS or ssl.queue_size % ssl.batch_size:
    raise ValueError(
        f"ssl.queue_size={ssl.queue_size} must be a multiple of ssl.batch_size="
        f"{ssl.batch_size} (solo-learn's FIFO writes whole batches) and >= {NUM_NEIGHBOURS}."
    )
  if not 0.0 <= ssl.base_tau <= ssl.final_tau <= 1.0:
    raise ValueError(
        f"ssl.base_tau={ssl.base_tau} and ssl.final_tau={ssl.final_tau} must satisfy "
        "0 <= base_tau <= final_tau <= 1."
    )


def build_model(backbone: ResNet, ssl: ml_collections.ConfigDict, seed: int) -> All4OneModel:
  return All4OneModel(
      backbone,
      ssl.projector_hidden_dim,
      ssl.projector_output_dim,
      ssl.predictor_hidden_dim,
      rngs=nnx.Rngs(seed),
  )


def fit(
    model: All4OneModel,
    images: np.ndarray | jax.Array,
    ssl: ml_collections.ConfigDict,
    *,
    augment_config: AugmentConfig,
    mean: Sequence[float],
    std: Sequence[float],
    seed: int,
    log: Callable[[dict], None] = lambda record: None,
    desc: str = "all4one",
    host_loop: bool | None = None,
    mesh: Mesh | None = None,
) -> tuple[All4OneModel, list[dict]]:
  """Trains `model` with All4One for ssl.steps steps (training.run_loop); returns the online
  model and the history (records also carry the unweighted terms and tau). The queue starts
  as random unit vectors (solo-learn: normalised randn)."""
  training.check_batch_size(ssl, images.shape[0], mesh)
  validate(ssl)
  model.train()
  momentum = model.momentum_encoder()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  momentum_graphdef, momentum_params, momentum_rest = nnx.split(momentum, nnx.Param, ...)
  # Own buffers: the clone shares the online arrays, and the step donates both.
  momentum_params, momentum_rest = jax.tree.map(jnp.copy, (momentum_params, momentum_rest))
  optimizer = make_optimizer(ssl)
  queue_key = jax.random.fold_in(jax.random.key(seed), _DROPOUT_STREAM + 1)
  queue = l2_normalize(
      jax.random.normal(queue_key, (ssl.queue_size, ssl.projector_output_dim)), axis=1
  )
  state = All4OneState(
      params,
      rest,
      momentum_params,
      momentum_rest,
      optimizer.init(params),
      queue,
      jnp.zeros((), jnp.int32),
  )
  step_fn = functools.partial(
      _step,
      graphdef,
      momentum_graphdef,
      optimizer,
      ssl.batch_size,
      augment_config,
      (ssl.steps, ssl.base_tau, ssl.final_tau),
  )
  state, history = training.run_loop(
      step_fn,
      state,
      images,
      ssl,
      mean=mean,
      std=std,
      seed=seed,
      log=log,
      desc=desc,
      host_loop=host_loop,
      mesh=mesh,
      name="All4One",
  )
  return nnx.merge(graphdef, state.params, state.rest), history
