"""CIFAR from its original files (python batches, binary records; no TensorFlow), the
restricted unpickler refusing a malicious batch, the README's preparation steps, the tfds
default data_dir, and ImageNet-1k from its folder layout."""

import os
import pickle
import subprocess
import tarfile

import numpy as np
import pytest

from helpers import cifar_files
from vibe_jax import safe_pickle
from vibe_jax.data.datasets import load_dataset


def concat(files, names):
  return (
      np.concatenate([files[n][0] for n in names]),
      np.concatenate([files[n][1] for n in names]).astype(np.int32),
  )


@pytest.mark.parametrize("kind", ["python", "binary"])
def test_cifar10_original_files(kind, tmp_path):
  files = cifar_files.cifar10_python_files()
  if kind == "binary":
    files = {f"{name}.bin": split for name, split in files.items()}
    cifar_files.write_binary(str(tmp_path / "cifar-10-batches-bin"), "cifar10", files)
  else:
    cifar_files.write_python(str(tmp_path / "cifar-10-batches-py"), "cifar10", files)
  data = load_dataset("cifar10", data_dir=str(tmp_path))
  suffix = ".bin" if kind == "binary" else ""
  train = concat(files, [f"data_batch_{i}{suffix}" for i in range(1, 6)])
  test = concat(files, [f"test_batch{suffix}"])
  np.testing.assert_array_equal(data.train_images, train[0])
  np.testing.assert_array_equal(data.train_labels, train[1])
  np.testing.assert_array_equal(data.test_images, test[0])
  np.testing.assert_array_equal(data.test_labels, test[1])
  assert data.num_classes == 10 and data.train_labels.dtype == np.int32


@pytest.mark.parametrize("kind", ["python", "binary"])
def test_cifar100_original_files_use_fine_labels(kind, tmp_path):
  train, test = cifar_files.random_split(4, 100, 0), cifar_files.random_split(3, 100, 1)
  if kind == "binary":
    write, folder, names = cifar_files.write_binary, "cifar-100-binary", ("train.bin", "test.bin")
  else:
    write, folder, names = cifar_files.write_python, "cifar-100-python", ("train", "test")
  write(str(tmp_path / folder), "cifar100", dict(zip(names, (train, test))))
  # data_dir may also be the unpacked folder itself
  data = load_dataset("cifar100", data_dir=str(tmp_path / folder), lazy_train=True)
  np.testing.assert_array_equal(data.train_images.read(np.arange(4)), train[0])
  np.testing.assert_array_equal(data.train_labels, train[1])
  np.testing.assert_array_equal(data.test_images, test[0])
  np.testing.assert_array_equal(data.test_labels, test[1])
  assert data.num_classes == 100


def test_malicious_batch_is_refused_unrun(tmp_path):
  marker = tmp_path / "ran"

  class Payload:

    def __reduce__(self):
      return (os.mkdir, (str(marker),))

  files = cifar_files.cifar10_python_files(1)
  folder = tmp_path / "cifar-10-batches-py"
  cifar_files.write_python(str(folder), "cifar10", files)
  (folder / "data_batch_3").write_bytes(pickle.dumps({"data": Payload()}, protocol=2))
  with pytest.raises(safe_pickle.UnsafePickleError, match=r"data_batch_3 .*(posix|os)\.mkdir"):
    load_dataset("cifar10", data_dir=str(tmp_path))
  assert not marker.exists()
  (folder / "data_batch_3").write_bytes(b"\x80\x02}q\x00(X")  # truncated
  with pytest.raises(ValueError, match="data_batch_3 is not a readable pickle"):
    load_dataset("cifar10", data_dir=str(tmp_path))


def test_readme_preparation_offline(tmp_path):
  """The README's steps as written: the downloaded tarball unpacked with tar into
  data_dir, nothing else installed (no TensorFlow is imported: tfds is never reached)."""
  source = tmp_path / "download"
  cifar_files.write_python(
      str(source / "cifar-10-batches-py"), "cifar10", cifar_files.cifar10_python_files(2)
  )
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  tarball = data_dir / "cifar-10-python.tar.gz"
  with tarfile.open(tarball, "w:gz") as archive:
    archive.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
  with pytest.raises(FileNotFoundError, match="tar xzf .*cifar-10-python.tar.gz"):
    load_dataset("cifar10", data_dir=str(data_dir))  # downloaded, not unpacked yet
  subprocess.run(["tar", "xzf", str(tarball), "-C", str(data_dir)], check=True)
  assert len(load_dataset("cifar10", data_dir=str(data_dir)).train_labels) == 10
  os.remove(data_dir / "cifar-10-batches-py" / "test_batch")
  with pytest.raises(FileNotFoundError, match=r"lacks \['test_batch'\]"):
    load_dataset("cifar10", data_dir=str(data_dir))


def test_empty_data_dir_is_tfds_default(tmp_path, monkeypatch):
  """dataset.data_dir '' means $TFDS_DATA_DIR, then ~/tensorflow_datasets (tfds's rule)."""
  files = cifar_files.cifar10_python_files(1)
  for where in ("env", "home/tensorflow_datasets"):
    cifar_files.write_python(str(tmp_path / where / "cifar-10-batches-py"), "cifar10", files)
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "env"))
  files["test_batch"][0][0, 0, 0] += 1  # tell the two copies apart
  cifar_files.write_python(str(tmp_path / "env" / "cifar-10-batches-py"), "cifar10", files)
  from_env = load_dataset("cifar10", data_dir="")
  np.testing.assert_array_equal(from_env.test_images, files["test_batch"][0])
  monkeypatch.delenv("TFDS_DATA_DIR")
  from_home = load_dataset("cifar10", data_dir=None)
  assert from_home.test_images[0, 0, 0, 0] != from_env.test_images[0, 0, 0, 0]
  monkeypatch.setenv("HOME", str(tmp_path / "nobody"))
  with pytest.raises(FileNotFoundError, match="nobody/tensorflow_datasets.*cifar-10-python"):
    load_dataset("cifar10", data_dir="")


def test_imagenet1k_folders_read_lazily(tmp_path):
  from PIL import Image

  rng = np.random.default_rng(0)
  wnids = ["n01440764", "n01443537"]
  for split, count in (("train", 3), ("val", 1)):
    for wnid in wnids:
      (tmp_path / split / wnid).mkdir(parents=True)
      for i in range(count):
        image = rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)
        Image.fromarray(image).save(tmp_path / split / wnid / f"{wnid}_{i}.JPEG")
  eager = load_dataset("imagenet1k", data_dir=str(tmp_path), image_size=16)
  lazy = load_dataset("imagenet1k", data_dir=str(tmp_path), image_size=16, lazy_train=True)
  assert eager.train_images.shape == (6, 16, 16, 3) and eager.test_images.shape == (2, 16, 16, 3)
  np.testing.assert_array_equal(eager.train_labels, [0, 0, 0, 1, 1, 1])
  np.testing.assert_array_equal(eager.test_labels, [0, 1])
  np.testing.assert_array_equal(
      lazy.train_images.read(np.array([4, 1])), eager.train_images[[4, 1]]
  )
  with Image.open(tmp_path / "train" / wnids[1] / f"{wnids[1]}_1.JPEG") as image:
    expected = np.asarray(image.convert("RGB").resize((16, 16), Image.BILINEAR))
  np.testing.assert_array_equal(eager.train_images[4], expected)
  flat = tmp_path / "flat"
  (flat / "train" / wnids[0]).mkdir(parents=True)
  (flat / "val").mkdir()
  (flat / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
  with pytest.raises(FileNotFoundError, match="no class folders.*val/<wnid>"):
    load_dataset("imagenet1k", data_dir=str(flat))
