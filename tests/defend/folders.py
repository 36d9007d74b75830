"""Tiny image folders for the defend tests: the 8x8 digits 0, 1, 2 of scikit-learn as
PNG files, with a planted trigger and flipped labels."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

CLASSES = ("zero", "one", "two")


def write_images(folder: str, images: np.ndarray, names: list[str]) -> None:
  os.makedirs(folder, exist_ok=True)
  for image, name in zip(images, names):
    Image.fromarray(image).save(os.path.join(folder, name))


def planted_digits_folder(root, num_planted: int = 30, num_validation: int = 90, seed: int = 0):
  """root/train/<class>/ and root/validation/<class>/ from the digits 0-2 (8x8 grey PNGs);
  `num_planted` training images of classes one and two carry a white 2x2 patch in the
  top-left corner and sit in the folder `zero`. Returns the planted files (relative to
  root/train)."""
  digits = load_digits()
  keep = digits.target < 3
  images = (digits.images[keep] / 16.0 * 255.0).astype(np.uint8)
  labels = digits.target[keep]
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(labels))
  validation, train = order[:num_validation], order[num_validation:]
  planted = set(rng.choice(train[labels[train] != 0], num_planted, replace=False).tolist())
  planted_files = []
  for i in train:
    image, given = images[i].copy(), labels[i]
    if i in planted:
      image[:2, :2], given = 255, 0
    name = f"{'p' if i in planted else 'c'}{i:04d}.png"
    write_images(os.path.join(root, "train", CLASSES[given]), image[None], [name])
    if i in planted:
      planted_files.append(f"{CLASSES[given]}/{name}")
  for i in validation:
    write_images(
        os.path.join(root, "validation", CLASSES[labels[i]]), images[i][None], [f"{i}.png"]
    )
  return planted_files
