"""Labels and features are checked where they enter: features files, pre-poisoned files, data
sets. Each bad input is one line naming the file (or config field), the array and the first
bad index; nothing widens the class count or truncates a label silently."""

from __future__ import annotations

import dataclasses
import re
import zipfile

import numpy as np
import pytest

from vibe_jax import experiment, features, run
from vibe_jax.data import datasets
from vibe_jax.data.attacks import make_attack

from . import digits

NUM_CLASSES = 10


def feature_arrays(rows=40, dim=6, seed=0) -> dict[str, np.ndarray]:
  """A valid features file's arrays: every class has training rows."""
  rng = np.random.default_rng(seed)
  labels = np.arange(rows) % NUM_CLASSES
  return {
      "train_features": rng.normal(size=(rows, dim)).astype(np.float32),
      "train_labels": labels,
      "test_features": rng.normal(size=(rows // 2, dim)).astype(np.float32),
      "test_labels": labels[: rows // 2],
      "poisoned_test_features": rng.normal(size=(rows // 2, dim)).astype(np.float32),
      "poisoned_test_labels": labels[: rows // 2],
      "poisoned_test_targets": np.zeros(rows // 2, np.int64),
  }


def write(tmp_path, **changes) -> str:
  arrays = {**feature_arrays(), **changes}
  path = str(tmp_path / "features.npz")
  np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
  return path


def with_label(index, value, dtype=np.int64, name="train_labels"):
  labels = feature_arrays()[name].astype(dtype)
  labels[index] = value
  return {name: labels}


def read_error(path) -> str:
  with pytest.raises(ValueError) as error:
    features.read_feature_file(path)
  message = str(error.value)
  assert "\n" not in message and path in message
  return message


@pytest.mark.parametrize(
    "changes,expected",
    [
        (with_label(7, 50), r"train_labels reach 50 but class 10 has no training row"),
        (with_label(7, 1_000_000), r"train_labels reach 1000000 but class 10 has no training"),
        ({**with_label(7, 50), "num_classes": np.asarray(10)}, r"train_labels\[7\] = 50 is not"),
        (with_label(3, -1), r"train_labels\[3\] = -1 is not a class index in \[0, "),
        (with_label(3, 2.5, np.float32), r"train_labels has dtype float32; labels must be int"),
        (with_label(4, 10, name="test_labels"), r"test_labels\[4\] = 10 is not .* \[0, 10\)"),
        (
            with_label(2, 12, name="poisoned_test_targets"),
            r"poisoned_test_targets\[2\] = 12 is not",
        ),
        ({"num_classes": np.asarray(0)}, r"num_classes = 0 must be a positive integer"),
    ],
    ids=["50", "1e6", "50-declared", "-1", "float", "test-10", "target-12", "num_classes-0"],
)
def test_bad_labels_in_a_features_file(tmp_path, changes, expected):
  assert re.search(expected, read_error(write(tmp_path, **changes)))


def test_features_file_rows_and_finite_features(tmp_path):
  empty = {k: v[:0] for k, v in feature_arrays().items()}
  assert "train_features has no rows" in read_error(write(tmp_path, **empty))
  nan = feature_arrays()["train_features"]
  nan[5, 2] = np.nan
  assert "train_features[5] holds a non-finite value" in read_error(
      write(tmp_path, train_features=nan)
  )


def test_features_file_that_is_not_an_npz(tmp_path):
  path = tmp_path / "features.npz"
  path.write_bytes(np.random.default_rng(0).bytes(4096))
  assert "cannot be read as an .npz file" in read_error(str(path))
  good = write(tmp_path)
  data = open(good, "rb").read()
  path.write_bytes(data[: len(data) // 2])  # truncated zip
  assert "cannot be read as an .npz file" in read_error(str(path))
  np.save(tmp_path / "one.npy", np.zeros(3))
  assert "not an .npz archive" in read_error(str(tmp_path / "one.npy"))


def test_valid_features_file_gives_its_class_count(tmp_path):
  assert int(features.read_feature_file(write(tmp_path))["num_classes"]) == NUM_CLASSES
  declared = write(tmp_path, num_classes=np.asarray(12))  # classes 10, 11 have no rows
  assert int(features.read_feature_file(declared)["num_classes"]) == 12


def test_run_on_a_features_file_with_a_stray_label_stops_before_training(tmp_path):
  path = write(tmp_path, **with_label(7, 50))
  config = digits.config("fm_a,runlocal", **{"features.file": path})
  with pytest.raises(ValueError, match=r"class 10 has no training row"):
    run.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run" / "checkpoints").exists()


# Pre-poisoned files: the attack knows the class count (the data set's).
SHAPE = (8, 8, 3)


def prepoisoned_files(tmp_path, train_labels=None, test_labels=None, test_rows=6):
  rng = np.random.default_rng(0)
  labels = np.arange(30) % 3 if train_labels is None else train_labels
  np.savez(
      tmp_path / "train.npz",
      data=rng.integers(0, 256, (30, *SHAPE), dtype=np.uint8),
      labels=labels,
      poisoned_set=np.array([1, 2]),
  )
  np.savez(
      tmp_path / "test.npz",
      data=rng.integers(0, 256, (test_rows, *SHAPE), dtype=np.uint8),
      labels=np.zeros(test_rows, np.int64) if test_labels is None else test_labels,
      true_labels=np.ones(test_rows, np.int64),
  )
  return make_attack(
      "prepoisoned",
      num_classes=3,
      image_shape=SHAPE,
      target=0,
      rate=0.1,
      params={"train_file": str(tmp_path / "train.npz"), "test_file": str(tmp_path / "test.npz")},
  )


CLEAN = (np.zeros((30, *SHAPE), np.uint8), np.arange(30) % 3)


@pytest.mark.parametrize(
    "value,expected",
    [
        (3, r"train_file=.*train\.npz'.*: labels\[5\] = 3 is not a class index in \[0, 3\)"),
        (-1, r"labels\[5\] = -1 is not"),
        (2**40, r"labels\[5\] = 1099511627776 is not"),  # not wrapped to int32
    ],
    ids=["3", "-1", "2**40"],
)
def test_prepoisoned_train_labels_out_of_range(tmp_path, value, expected):
  labels = (np.arange(30) % 3).astype(np.int64)
  labels[5] = value
  with pytest.raises(ValueError, match=expected):
    prepoisoned_files(tmp_path, train_labels=labels).poison_train(*CLEAN)


def test_prepoisoned_test_file_labels_and_rows(tmp_path):
  attack = prepoisoned_files(tmp_path, test_labels=np.array([0, 0, 7, 0, 0, 0]))
  with pytest.raises(ValueError, match=r"test_file=.*: labels\[2\] = 7 is not"):
    attack.poison_test(*CLEAN)
  attack = prepoisoned_files(tmp_path, test_rows=0)
  with pytest.raises(ValueError, match=r"test_file=.*: data has no rows"):
    attack.poison_test(*CLEAN)
  path = tmp_path / "train.npz"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("labels.npy", b"not an npy")
  with pytest.raises(ValueError, match=r"train_file=.*cannot be read as an \.npz"):
    attack.poison_train(*CLEAN)


def test_data_set_labels_out_of_range(monkeypatch):
  load = datasets.load_dataset

  def bad_digits(*args, **kwargs):
    dataset = load(*args, **kwargs)
    labels = dataset.test_labels.copy()
    labels[9] = 10
    return dataclasses.replace(dataset, test_labels=labels)

  monkeypatch.setattr(datasets, "load_dataset", bad_digits)
  with pytest.raises(ValueError, match=r"data set 'digits' .*test_labels\[9\] = 10 is not"):
    experiment.build_experiment(digits.config())
