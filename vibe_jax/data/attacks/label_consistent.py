"""Label-consistent backdoor (Turner et al. 2019): a clean-label attack.

Only target-class training images are poisoned and none is relabelled. Each is first
pushed away from its (correct) class by PGD against a benign surrogate classifier, so
that the victim finds the image hard and leans on the trigger instead, then a 3x3
checkerboard is stamped into all four corners. At test time the corner trigger alone is
stamped on non-target images.

`attack.rate` here is the fraction of the *target class* that is poisoned (reference:
0.25), not a fraction of all samples. The surrogate, trained here on the clean training
images passed to poison_train (seed attack.seed), is `surrogate`: 'mlp' (default), a
one-hidden-layer MLP (enough for digits), or 'resnet', the reference's choice: the project's
ResNet of surrogate_arch / stem / width (surrogate.py), attacked in eval mode. PGD: L_inf
eps 16/255, 30 steps of 1.5/255, no random start, untargeted on the true label. The
perturbed images are cached in the workdir (experiment.build_experiment), so a rerun does
not retrain the surrogate.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vibe_jax.data.attacks import surrogate as surrogate_lib
from vibe_jax.data.attacks.base import ATTACKS, Attack, PoisonedTrainSet, check_images
from vibe_jax.models.resnet import check_args as check_resnet_args

CHECKERBOARD = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], np.uint8)
SURROGATES = ("mlp", "resnet")


def _mlp_logits(params: dict, images: jax.Array) -> jax.Array:
  """Images float NHWC in [0, 1] -> logits (no hidden layer when params lack 'w1')."""
  x = images.reshape(images.shape[0], -1) - 0.5
  if "w1" in params:
    x = jax.nn.relu(x @ params["w1"] + params["b1"])
  return x @ params["w2"] + params["b2"]


def _cross_entropy(params: dict, images: jax.Array, labels: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(_mlp_logits(params, images), labels).mean()


@functools.partial(jax.jit, static_argnames=("num_classes", "hidden", "steps", "batch_size"))
def train_surrogate(
    images: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    *,
    num_classes: int,
    hidden: int,
    steps: int,
    batch_size: int,
    learning_rate: float,
) -> dict:
  """A benign MLP (linear softmax if hidden == 0) fitted to (images in [0, 1], labels)
  with Adam; pure in `key`."""
  dim = int(np.prod(images.shape[1:]))
  init_key, data_key = jax.random.split(key)
  k1, k2 = jax.random.split(init_key)
  params = {
      "w2": jax.random.normal(k2, (hidden or dim, num_classes)) / jnp.sqrt(hidden or dim),
      "b2": jnp.zeros(num_classes),
  }
  if hidden:
    params.update(
        w1=jax.random.normal(k1, (dim, hidden)) * jnp.sqrt(2.0 / dim), b1=jnp.zeros(hidden)
    )
  optimizer = optax.adam(learning_rate)

  def step(i, carry):
    params, state = carry
    batch = jax.random.randint(jax.random.fold_in(data_key, i), (batch_size,), 0, images.shape[0])
    grads = jax.grad(_cross_entropy)(params, images[batch], labels[batch])
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  params, _ = jax.lax.fori_loop(0, steps, step, (params, optimizer.init(params)))
  return params


@functools.partial(jax.jit, static_argnames=("steps",))
def pgd_untargeted(
    params: dict, images: jax.Array, labels: jax.Array, *, eps: float, step_size: float, steps: int
) -> jax.Array:
  """L_inf PGD from the clean image (no random start) that raises the loss of `labels`."""

  def step(_, adversarial):
    grad = jax.grad(_cross_entropy, argnums=1)(params, adversarial, labels)
    adversarial = adversarial + step_size * jnp.sign(grad)
    return jnp.clip(jnp.clip(adversarial, images - eps, images + eps), 0.0, 1.0)

  return jax.lax.fori_loop(0, steps, step, images)


@ATTACKS.register("label_consistent")
class LabelConsistent(Attack):
  """Clean-label: PGD-perturbed target-class images with a four-corner checkerboard.

  `eps` and `step_size` are in pixel units (of 255), as in the reference config.
  surrogate_hidden applies to the 'mlp' surrogate, surrogate_arch / stem / width /
  augment to 'resnet'; steps, lr and batch_size to both.
  """

  caches_poison = True  # the surrogate's training is worth keeping (build_experiment)

  def __init__(
      self,
      *,
      eps: float = 16.0,
      step_size: float = 1.5,
      pgd_steps: int = 30,
      amplitude: int = 255,
      surrogate: str = "mlp",
      surrogate_hidden: int = 256,
      surrogate_arch: str = "resnet18",
      surrogate_stem: str = "cifar",
      surrogate_width: int = 64,
      surrogate_augment: bool = True,
      surrogate_steps: int = 500,
      surrogate_lr: float = 1e-3,
      batch_size: int = 256,
      **common,
  ):
    super().__init__(**common)
    if self.label_mode != "all_to_one":
      raise ValueError(
          "attack.label_mode must be 'all_to_one' for label_consistent: a "
          "clean-label attack poisons one target class (attack.target)."
      )
    height, width = self.image_shape[:2]
    if min(height, width) < 6:
      raise ValueError(
          f"label_consistent stamps 3x3 patterns in four corners; the "
          f"{height}x{width} image is too small."
      )
    if not 0 < eps <= 255 or not 0 < step_size <= 255 or pgd_steps < 0:
      raise ValueError(
          f"attack.params eps={eps}, step_size={step_size} (pixel units in "
          f"(0, 255]) and pgd_steps={pgd_steps} (>= 0) are out of range."
      )
    if not 0 < amplitude <= 255:
      raise ValueError(f"attack.params.amplitude={amplitude} must lie in (0, 255].")
    if surrogate_hidden < 0 or min(surrogate_steps, batch_size) <= 0 or surrogate_lr <= 0:
      raise ValueError(
          "attack.params surrogate_steps, batch_size and surrogate_lr must be "
          "positive and surrogate_hidden >= 0 (0: a linear softmax surrogate)."
      )
    if surrogate not in SURROGATES:
      raise ValueError(
          f"attack.params.surrogate={surrogate!r}; use one of {SURROGATES} (mlp: a "
          "one-hidden-layer MLP, resnet: the victim's architecture, as the reference)."
      )
    try:
      check_resnet_args(surrogate_arch, surrogate_stem, surrogate_width)
    except ValueError as error:
      raise ValueError(
          f"attack.params surrogate_arch={surrogate_arch!r}, surrogate_stem="
          f"{surrogate_stem!r}, surrogate_width={surrogate_width!r}: {error}"
      ) from None
    if surrogate == "resnet" and surrogate_augment and height != width:
      raise ValueError(
          f"attack.params.surrogate_augment crops squares; the images are {height}x{width}: "
          "set attack.params.surrogate_augment=False."
      )
    self.surrogate = surrogate
    self.surrogate_arch, self.surrogate_stem = surrogate_arch, surrogate_stem
    self.surrogate_width, self.surrogate_augment = surrogate_width, surrogate_augment
    self.eps, self.step_size, self.pgd_steps = eps, step_size, pgd_steps
    self.amplitude = amplitude
    self.surrogate_hidden, self.surrogate_steps = surrogate_hidden, surrogate_steps
    self.surrogate_lr, self.batch_size = surrogate_lr, batch_size

  # -- the trigger ---------------------------------------------------------------------
  def corner_mask_and_pattern(self) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) bool mask of the four 3x3 corners and the (h, w, 3) uint8 pattern there."""
    height, width, channels = self.image_shape
    mask = np.zeros((height, width), bool)
    pattern = np.zeros((height, width, channels), np.uint8)
    for rows in (slice(0, 3), slice(height - 3, height)):
      for cols in (slice(0, 3), slice(width - 3, width)):
        mask[rows, cols] = True
        pattern[rows, cols] = (CHECKERBOARD * self.amplitude)[..., None]
    return mask, pattern

  def apply_trigger(self, images: np.ndarray) -> np.ndarray:
    """Stamps the corners (black and white cells alike), as the reference does."""
    mask, pattern = self.corner_mask_and_pattern()
    out = images.copy()
    out[:, mask] = pattern[mask]
    return out

  # -- clean-label poisoning -----------------------------------------------------------
  def poison_indices(self, labels: np.ndarray) -> np.ndarray:
    """round(rate x |target class|) target-class samples."""
    candidates = np.flatnonzero(labels == self.target)
    count = int(round(self.rate * len(candidates)))
    if count == 0:
      raise ValueError(
          f"attack.rate={self.rate} is, for label_consistent, the fraction of "
          f"the {len(candidates)} target-class (attack.target={self.target}) "
          "training images to poison; it selects none. Raise attack.rate "
          "(reference: 0.25)."
      )
    rng = np.random.default_rng(self.seed)
    return np.sort(rng.choice(candidates, size=count, replace=False))

  def adversarial_images(
      self,
      images: np.ndarray,
      labels: np.ndarray,
      train_images: np.ndarray,
      train_labels: np.ndarray,
  ) -> np.ndarray:
    """PGD images (uint8) within eps of `images` against a surrogate fit to the train set."""
    if self.surrogate == "resnet":
      adversarial = self._resnet_pgd(images, labels, train_images, train_labels)
    else:
      adversarial = self._mlp_pgd(images, labels, train_images, train_labels)
    # Rounding must not leave the eps ball: clip again on the integer grid.
    bound = int(np.floor(self.eps))
    clean = images.astype(np.int32)
    adversarial = np.clip(adversarial.astype(np.int32), clean - bound, clean + bound)
    return np.clip(adversarial, 0, 255).astype(np.uint8)

  def _resnet_pgd(self, images, labels, train_images, train_labels) -> np.ndarray:
    """Rounded PGD images (0..255) against the ResNet surrogate; prints its accuracy on
    the training images and on `images` before and after PGD."""
    if len(images) == 0:
      return images.astype(float)
    model = surrogate_lib.train_resnet_surrogate(
        train_images,
        train_labels,
        num_classes=self.num_classes,
        arch=self.surrogate_arch,
        stem=self.surrogate_stem,
        width=self.surrogate_width,
        steps=self.surrogate_steps,
        batch_size=self.batch_size,
        learning_rate=self.surrogate_lr,
        augment=self.surrogate_augment,
        seed=self.seed,
    )
    adversarial = surrogate_lib.pgd_untargeted(
        model,
        images,
        labels,
        eps=float(self.eps),
        step_size=float(self.step_size),
        steps=self.pgd_steps,
        batch_size=self.batch_size,
    )
    adversarial = np.round(adversarial)
    predict = lambda x: surrogate_lib.logits(model, x, self.batch_size).argmax(-1)
    accuracy = lambda x, y: float(np.mean(predict(x) == y))
    print(
        f"label_consistent resnet surrogate: training-set accuracy "
        f"{accuracy(train_images, train_labels):.4f}; on the {len(images)} images to poison "
        f"{accuracy(images, labels):.4f} before PGD, {accuracy(adversarial, labels):.4f} after"
    )
    return adversarial

  def _mlp_pgd(self, images, labels, train_images, train_labels) -> np.ndarray:
    """Rounded PGD images (0..255) against the MLP surrogate."""
    to_unit = lambda x: jnp.asarray(x, jnp.float32) / 255.0
    params = train_surrogate(
        to_unit(train_images),
        jnp.asarray(train_labels, jnp.int32),
        jax.random.key(self.seed),
        num_classes=self.num_classes,
        hidden=self.surrogate_hidden,
        steps=self.surrogate_steps,
        batch_size=min(self.batch_size, len(train_images)),
        learning_rate=self.surrogate_lr,
    )
    chunks = []
    for start in range(0, len(images), self.batch_size):
      batch = to_unit(images[start : start + self.batch_size])
      chunks.append(
          np.asarray(
              pgd_untargeted(
                  params,
                  batch,
                  jnp.asarray(labels[start : start + self.batch_size], jnp.int32),
                  eps=self.eps / 255.0,
                  step_size=self.step_size / 255.0,
                  steps=self.pgd_steps,
              )
          )
      )
    return np.round(np.concatenate(chunks) * 255.0) if chunks else images.astype(float)

  def poison_train(self, images: np.ndarray, labels: np.ndarray) -> PoisonedTrainSet:
    check_images(images)
    indices = self.poison_indices(labels)
    poisoned = images.copy()
    poisoned[indices] = self.apply_trigger(
        self.adversarial_images(images[indices], labels[indices], images, labels)
    )
    mask = np.zeros(len(labels), bool)
    mask[indices] = True
    labels = labels.astype(np.int32)
    return PoisonedTrainSet(poisoned, labels.copy(), labels.copy(), mask)
