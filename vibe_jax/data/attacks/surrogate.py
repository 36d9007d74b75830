"""The label-consistent attack's deep surrogate: the project's ResNet (vibe_jax.models, the
builder the deep victim uses) under a linear classifier, trained with cross-entropy on the
clean training images, and L_inf PGD against it in eval mode (BatchNorm running statistics).

Turner et al. (and the reference) craft the perturbations against a separately trained
ResNet-18, of the victim's family: the perturbation only helps the attack where it transfers
to the victim, making the poisoned target images hard for it (on Fashion-MNIST a surrogate
trained 3 epochs instead of 1 doubled the victim's ASR: docs/fashion_mnist.md). Images stay on the 0..255 scale throughout (eps and step size in pixel units); the
network sees them standardised with the training set's per-channel statistics.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vibe_jax import engine
from vibe_jax.batched import batched_apply
from vibe_jax.data.transforms import normalize, random_crop, random_flip
from vibe_jax.models import build_backbone

_STATISTICS_SAMPLE = 10_000  # images the per-channel mean / std are measured on
_CROP_PADDING = 4  # CIFAR's random crop


class SurrogateClassifier(nnx.Module):
  """ResNet trunk + linear layer: images (0..255 float NHWC) -> logits."""

  def __init__(
      self,
      arch: str,
      stem: str,
      width: int,
      num_classes: int,
      mean: tuple[float, ...],
      std: tuple[float, ...],
      *,
      seed: int,
  ):
    self.backbone = build_backbone(arch, stem, width, seed=seed)
    self.fc = nnx.Linear(self.backbone.feature_dim, num_classes, rngs=nnx.Rngs(seed))
    self.mean, self.std = mean, std

  def __call__(self, images: jax.Array) -> jax.Array:
    return self.fc(self.backbone(normalize(images, self.mean, self.std)))


def channel_statistics(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Per-channel (mean, std) on the 0..1 scale of an evenly spaced sample of the images."""
  sample = images[:: max(1, len(images) // _STATISTICS_SAMPLE)].astype(np.float32) / 255.0
  mean = sample.mean(axis=(0, 1, 2))
  std = np.maximum(sample.std(axis=(0, 1, 2)), 1e-3)  # a constant channel stays finite
  return tuple(map(float, mean)), tuple(map(float, std))


@dataclasses.dataclass(frozen=True)
class _TrainStep:
  """One cross-entropy step of the surrogate (an engine step function; hashed by these
  values, so a second surrogate of the same shapes and schedule reuses the compilation)."""

  graphdef: nnx.GraphDef
  batch_size: int
  augment: bool
  learning_rate: float
  steps: int

  @property
  def optimizer(self) -> optax.GradientTransformation:
    return optax.adam(optax.cosine_decay_schedule(self.learning_rate, self.steps))

  def __call__(self, inputs, step, state):
    images, labels, key = inputs
    params, rest, opt_state = state
    batch_key, augment_key = jax.random.split(key)
    rows = engine.batch_indices(batch_key, step, images.shape[0], self.batch_size)
    batch = images[rows].astype(jnp.float32)
    if self.augment:
      crop_key, flip_key = jax.random.split(jax.random.fold_in(augment_key, step))
      batch = random_flip(flip_key, random_crop(crop_key, batch, batch.shape[1], _CROP_PADDING))

    def loss_fn(params, rest):
      # copy=True: fresh Variables under grad, so BatchNorm may update its statistics.
      model = nnx.merge(self.graphdef, params, rest, copy=True)
      logits = model(batch)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels[rows]).mean()
      return loss, nnx.state(model, nnx.Not(nnx.Param))

    (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest)
    updates, opt_state = self.optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), rest, opt_state), {"loss": loss}


def train_resnet_surrogate(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    arch: str,
    stem: str,
    width: int,
    steps: int,
    batch_size: int,
    learning_rate: float,
    augment: bool,
    seed: int,
) -> SurrogateClassifier:
  """The surrogate fitted to (uint8 images, labels): Adam with a cosine decay of
  `learning_rate` over `steps` mini-batches (engine.batch_indices, the engine's CPU policy),
  CIFAR's crop + flip when `augment`; returned in eval mode. Pure in `seed`."""
  mean, std = channel_statistics(images)
  model = SurrogateClassifier(arch, stem, width, num_classes, mean, std, seed=seed)
  model.train()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  step_fn = _TrainStep(graphdef, min(batch_size, len(images)), augment, learning_rate, steps)
  inputs = (jnp.asarray(images), jnp.asarray(labels, jnp.int32), jax.random.key(seed))
  with engine.progress_bar(steps, 0, "label_consistent surrogate") as progress:
    (params, rest, _), metrics = engine.run_steps(
        step_fn,
        (params, rest, step_fn.optimizer.init(params)),
        inputs,
        0,
        steps,
        host_loop=engine.use_host_loop(convolutional=True),
        progress=progress,
    )
  engine.check_finite(
      metrics["loss"],
      "The label_consistent surrogate's",
      0,
      steps,
      "lower attack.params.surrogate_lr.",
  )
  model = nnx.merge(graphdef, params, rest)
  model.eval()
  return model


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _pgd_step(graphdef, state, adversarial, clean, labels, eps, step_size):
  def loss(x):
    logits = nnx.merge(graphdef, state)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  adversarial = adversarial + step_size * jnp.sign(jax.grad(loss)(adversarial))
  return jnp.clip(jnp.clip(adversarial, clean - eps, clean + eps), 0.0, 255.0)


def pgd_untargeted(
    model: SurrogateClassifier,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    eps: float,
    step_size: float,
    steps: int,
    batch_size: int,
) -> np.ndarray:
  """L_inf PGD on the 0..255 scale from the clean images (no random start) that raises the
  eval-mode surrogate's loss of `labels`; float images, not yet rounded. One compiled call
  per step (XLA:CPU runs convolution gradients inside a loop far slower: engine.py)."""
  graphdef, state = nnx.split(model)

  def attack(batch, batch_labels):
    clean = jnp.asarray(batch, jnp.float32)
    adversarial = clean
    for _ in range(steps):
      adversarial = _pgd_step(graphdef, state, adversarial, clean, batch_labels, eps, step_size)
    return adversarial

  return batched_apply(attack, batch_size, images, np.asarray(labels, np.int32))


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _logits(graphdef, state, images):
  return nnx.merge(graphdef, state)(jnp.asarray(images, jnp.float32))


def logits(model: SurrogateClassifier, images: np.ndarray, batch_size: int) -> np.ndarray:
  """The eval-mode surrogate's logits of (0..255) images, in batches."""
  graphdef, state = nnx.split(model)
  return batched_apply(lambda batch: _logits(graphdef, state, batch), batch_size, images)
