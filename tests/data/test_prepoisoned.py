"""Reading pre-poisoned sets (npz and Adaptive folders) written here, and attack 'prepoisoned'."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vibe_jax import experiment
from vibe_jax.data import prepoisoned
from vibe_jax.data.attacks import make_attack

SHAPE = (8, 8, 3)


def clean_set(n=30, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (n, *SHAPE), dtype=np.uint8), (np.arange(n) % 3).astype(np.int32))


def poisoned_copy(images, labels, indices, target=0):
  images, labels = images.copy(), labels.copy()
  images[indices, :2, :2] = 255
  labels[indices] = target
  return images, labels


def prepoisoned_attack(train_file, test_file, **kw):
  return make_attack(
      "prepoisoned",
      num_classes=3,
      image_shape=SHAPE,
      target=0,
      rate=0.1,
      params={"train_file": str(train_file), "test_file": str(test_file)},
      **kw,
  )


def write_pngs(folder, images):
  folder.mkdir(parents=True)
  for i, image in enumerate(images):
    Image.fromarray(image).save(folder / f"{i}.png")


@pytest.mark.parametrize("as_mask", [True, False])
def test_npz_round_trip(tmp_path, as_mask):
  images, labels = clean_set()
  indices = np.array([4, 7, 11])
  bad_images, given = poisoned_copy(images, labels, indices)
  stored = np.zeros(len(labels), bool)
  stored[indices] = True
  np.savez(
      tmp_path / "train.npz",
      data=bad_images,
      labels=given,
      poisoned_set=stored if as_mask else indices,
  )
  test_images, test_labels = clean_set(12, seed=1)
  keep = test_labels != 0
  triggered = test_images[keep].copy()
  triggered[:, :2, :2] = 255
  np.savez(tmp_path / "test.npz", data=triggered, labels=np.zeros(keep.sum(), np.int64))

  attack = prepoisoned_attack(tmp_path / "train.npz", tmp_path / "test.npz")
  train = attack.poison_train(images, labels)
  np.testing.assert_array_equal(train.images, bad_images)
  np.testing.assert_array_equal(train.labels, given)
  np.testing.assert_array_equal(train.true_labels, labels)  # from the clean set
  np.testing.assert_array_equal(np.flatnonzero(train.poison_mask), indices)
  test = attack.poison_test(test_images, test_labels)
  np.testing.assert_array_equal(test.images, triggered)
  np.testing.assert_array_equal(test.true_labels, test_labels[keep])  # clean, non-target
  assert np.all(test.attacker_labels == 0)


def test_npz_test_true_labels_win_and_mismatches_fail(tmp_path):
  images, labels = clean_set()
  np.savez(tmp_path / "train.npz", data=images[:-1], labels=labels[:-1], poisoned_set=np.array([1]))
  np.savez(
      tmp_path / "test.npz", data=images[:5], labels=np.full(5, 2), true_labels=np.arange(5) % 2
  )
  attack = prepoisoned_attack(tmp_path / "train.npz", tmp_path / "test.npz")
  test = attack.poison_test(images, labels)  # lengths need not match with true_labels
  np.testing.assert_array_equal(test.true_labels, np.arange(5) % 2)
  np.testing.assert_array_equal(test.attacker_labels, np.full(5, 2))
  with pytest.raises(ValueError, match="same samples in order"):
    attack.poison_train(images, labels)
  np.savez(
      tmp_path / "small.npz", data=images[:, :4, :4], labels=labels, poisoned_set=np.array([1])
  )
  with pytest.raises(ValueError, match="train_file"):
    prepoisoned_attack(tmp_path / "small.npz", tmp_path / "test.npz").poison_train(images, labels)
  np.savez(tmp_path / "nolabels.npz", data=images[:4], labels=np.zeros(4, int))
  with pytest.raises(ValueError, match="true_labels"):  # 4 images, 20 non-target clean ones
    prepoisoned_attack(tmp_path / "train.npz", tmp_path / "nolabels.npz").poison_test(
        images, labels
    )


def test_adaptive_folder_with_numpy_files(tmp_path):
  images, labels = clean_set()
  poison, cover = np.array([2, 5]), np.array([9])
  bad_images, given = poisoned_copy(images, labels, poison)
  root = tmp_path / "poisoned_train_set"
  write_pngs(root / "imgs", bad_images)
  np.save(root / "labels.npy", given)
  np.save(root / "poison_indices.npy", poison)
  np.save(root / "cover_indices.npy", cover)
  test_images = bad_images[labels != 0]
  write_pngs(tmp_path / "testset", test_images)

  attack = prepoisoned_attack(root, tmp_path / "testset")
  train = attack.poison_train(images, labels)
  np.testing.assert_array_equal(train.images, bad_images)  # PNG is lossless
  np.testing.assert_array_equal(train.labels, given)
  np.testing.assert_array_equal(np.flatnonzero(train.poison_mask), poison)
  np.testing.assert_array_equal(np.flatnonzero(train.cover_mask), cover)
  test = attack.poison_test(images, labels)
  np.testing.assert_array_equal(test.images, test_images)
  assert np.all(test.attacker_labels == 0)


def test_adaptive_folder_with_torch_files_and_numeric_order(tmp_path):
  torch = pytest.importorskip("torch")
  images, labels = clean_set(12)
  root = tmp_path / "set"
  write_pngs(root / "data", images)  # the VIBE reference's name for the image folder
  torch.save(torch.as_tensor(labels, dtype=torch.long), root / "labels")
  torch.save([3, 10], root / "poison_indices")
  stored = prepoisoned.load_train(str(root))
  np.testing.assert_array_equal(stored.images, images)  # 10.png after 9.png, not after 1.png
  np.testing.assert_array_equal(stored.labels, labels)
  np.testing.assert_array_equal(stored.poison_indices, [3, 10])
  assert stored.cover_indices is None


def test_missing_or_bad_files_are_clear_errors(tmp_path):
  with pytest.raises(ValueError, match="attack.params.train_file is required"):
    prepoisoned_attack("", tmp_path)
  with pytest.raises(FileNotFoundError, match="test_file"):
    prepoisoned_attack(tmp_path, tmp_path / "absent.npz")
  with pytest.raises(FileNotFoundError, match="imgs/"):
    prepoisoned.load_train(str(tmp_path))
  np.savez(tmp_path / "x.npz", data=np.zeros((2, *SHAPE), np.uint8), labels=[0, 1])
  with pytest.raises(KeyError, match="poisoned_set"):
    prepoisoned.load_train(str(tmp_path / "x.npz"))
  with pytest.raises(ValueError, match=r"\[0, 3\)"):
    prepoisoned.poison_indices_from(np.array([5]), 3, "where")


def test_build_experiment_reproduces_a_stored_badnets_run(tmp_path):
  """Digits poisoned by BadNets, stored as npz, read back through the config."""
  from configs import digits_badnets

  config = digits_badnets.get_config()
  original = experiment.build_experiment(config)
  train, test = original.poisoned_train, original.poisoned_test
  np.savez(
      tmp_path / "train.npz", data=train.images, labels=train.labels, poisoned_set=train.poison_mask
  )
  np.savez(tmp_path / "test.npz", data=test.images, labels=test.attacker_labels)
  config.attack.name = "prepoisoned"
  config.attack.params = {
      "train_file": str(tmp_path / "train.npz"),
      "test_file": str(tmp_path / "test.npz"),
  }
  restored = experiment.build_experiment(config)
  for a, b in (
      (restored.poisoned_train.images, train.images),
      (restored.poisoned_train.labels, train.labels),
      (restored.poisoned_train.poison_mask, train.poison_mask),
      (restored.poisoned_test.images, test.images),
      (restored.poisoned_test.true_labels, test.true_labels),
  ):
    np.testing.assert_array_equal(a, b)
