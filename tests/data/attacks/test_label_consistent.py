"""The label-consistent attack: clean labels, bounded PGD, the corner triggers."""

import numpy as np
import pytest

from helpers.attacks import attack


def class_images(n=200, shape=(16, 16, 3), seed=0):
  """Learnable toy classes: class c brightens a horizontal band c of the image."""
  rng = np.random.default_rng(seed)
  labels = (np.arange(n) % 10).astype(np.int32)
  images = rng.integers(40, 120, size=(n, *shape)).astype(np.int64)
  for i, c in enumerate(labels):
    images[i, c : c + 3] += 100
  return images.clip(0, 255).astype(np.uint8), labels


def test_label_consistent_clean_label_pgd_and_corners():
  images, labels = class_images()
  lc = attack("label_consistent", rate=0.5, shape=images.shape[1:])
  out = lc.poison_train(images, labels)
  poisoned = np.flatnonzero(out.poison_mask)
  assert len(poisoned) == 10 and np.all(labels[poisoned] == 0)  # half of the 20 zeros
  np.testing.assert_array_equal(out.labels, labels)  # no label flipped
  corner = np.zeros((16, 16), bool)
  for rows in (slice(0, 3), slice(13, 16)):
    for cols in (slice(0, 3), slice(13, 16)):
      corner[rows, cols] = True
  checker = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]]) * 255
  for i in poisoned:
    for corner_cells in (
        out.images[i, :3, :3],
        out.images[i, :3, -3:],
        out.images[i, -3:, :3],
        out.images[i, -3:, -3:],
    ):
      np.testing.assert_array_equal(corner_cells, np.repeat(checker[..., None], 3, -1))
  delta = out.images[poisoned].astype(int) - images[poisoned]
  assert np.abs(delta[:, ~corner]).max() <= 16 and np.abs(delta[:, ~corner]).max() > 0
  adversarial = lc.adversarial_images(images[poisoned], labels[poisoned], images, labels)
  assert np.abs(adversarial.astype(int) - images[poisoned]).max() <= 16  # before stamping
  test = lc.poison_test(images, labels)
  assert np.all(test.true_labels != 0) and np.all(test.attacker_labels == 0)
  np.testing.assert_array_equal(test.images[:, ~corner], images[labels != 0][:, ~corner])


def test_label_consistent_rate_is_a_fraction_of_the_target_class():
  images, labels = class_images()
  with pytest.raises(ValueError, match="fraction of the 20 target-class"):
    attack("label_consistent", rate=0.01, shape=images.shape[1:]).poison_train(images, labels)
  with pytest.raises(ValueError, match="all_to_one"):
    attack("label_consistent", label_mode="all_to_all")


# The ResNet surrogate, at the smallest scale that trains it: width 4, 20 steps, 5 PGD steps.
TINY_RESNET = dict(
    surrogate="resnet", surrogate_width=4, surrogate_steps=20, surrogate_lr=1e-2, pgd_steps=5
)


def cross_entropy(logits, labels):
  """Mean -log softmax(logits)[label], in numpy (float64)."""
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  return float(-log_softmax[np.arange(len(labels)), labels].mean())


@pytest.mark.slow
def test_resnet_surrogate_pgd_is_bounded_raises_the_loss_and_is_seeded():
  from vibe_jax.data.attacks import surrogate

  images, labels = class_images()
  targets = np.flatnonzero(labels == 0)
  lc = attack("label_consistent", rate=0.5, shape=images.shape[1:], **TINY_RESNET)
  adversarial = lc.adversarial_images(images[targets], labels[targets], images, labels)
  delta = adversarial.astype(int) - images[targets]
  assert adversarial.dtype == np.uint8 and 0 < np.abs(delta).max() <= 16  # integer eps ball

  # The same seed trains the same surrogate again, and the attack's images are its PGD's.
  model = surrogate.train_resnet_surrogate(
      images,
      labels,
      num_classes=10,
      arch="resnet18",
      stem="cifar",
      width=4,
      steps=20,
      batch_size=lc.batch_size,
      learning_rate=1e-2,
      augment=True,
      seed=0,
  )
  again = surrogate.pgd_untargeted(
      model, images[targets], labels[targets], eps=16.0, step_size=1.5, steps=5, batch_size=64
  )
  clean = images[targets].astype(float)
  assert np.all(np.abs(again - clean) <= 16 + 1e-4) and again.min() >= 0 and again.max() <= 255
  np.testing.assert_array_equal(np.clip(np.round(again), clean - 16, clean + 16), adversarial)
  # PGD raised the (eval-mode) surrogate's loss on the true label.
  logits = lambda x: surrogate.logits(model, x, 64)
  assert (
      cross_entropy(logits(again), labels[targets])
      > cross_entropy(logits(clean), labels[targets]) + 0.1
  )


def test_surrogate_params_are_checked_naming_the_field():
  with pytest.raises(ValueError, match="attack.params.surrogate='vgg'"):
    attack("label_consistent", surrogate="vgg")
  with pytest.raises(ValueError, match="surrogate_arch='resnet7'.*unknown backbone arch"):
    attack("label_consistent", surrogate="resnet", surrogate_arch="resnet7")
  with pytest.raises(ValueError, match="surrogate_width=0"):
    attack("label_consistent", surrogate="resnet", surrogate_width=0)
  with pytest.raises(ValueError, match="surrogate_augment=False"):
    attack("label_consistent", surrogate="resnet", shape=(16, 24, 3))
  attack("label_consistent", surrogate="resnet", surrogate_augment=False, shape=(16, 24, 3))
