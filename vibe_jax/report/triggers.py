"""What the trigger looks like and how visible it is: clean / triggered image pairs from the
training and the test set, and their PSNR and SSIM (BackdoorBench's visual-quality measures).

Why at run time: only the run holds the clean images next to the poisoned ones, so it
writes `trigger_examples.npz` (a few pairs for the report's picture, and the per-image
PSNR / SSIM of up to MAX_MEASURED pairs per split); results.json and report.md read it.

PSNR = 10 log10(255^2 / MSE) per image (infinite for an unchanged image, which the mean
leaves out and counts). SSIM is Wang et al. (2004) with their parameters: a Gaussian
window of sigma 1.5 (11 x 11), K1 = 0.01, K2 = 0.03, population (co)variances, per channel,
averaged over the pixels whose window lies inside the image: the definition scikit-image's
`structural_similarity(..., gaussian_weights=True, use_sample_covariance=False,
data_range=255, channel_axis=-1)` computes (scikit-image is not a dependency; the test
compares with a torch transcription of the formula).
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import scipy.ndimage

from vibe_jax import files
from vibe_jax.data.rows import Rows

__all__ = [
    "EXAMPLES_FILE",
    "MAX_MEASURED",
    "load_examples",
    "psnr",
    "save_examples",
    "ssim",
    "visibility",
]

EXAMPLES_FILE = "trigger_examples.npz"
MAX_MEASURED = 256  # pairs per split measured: the mean is stable well before that
NUM_SHOWN = 6  # pairs per split in the picture
SPLITS = ("train", "test")
_SSIM_SIGMA, _SSIM_TRUNCATE = 1.5, 3.5  # an 11 x 11 window
_SSIM_RADIUS = int(_SSIM_TRUNCATE * _SSIM_SIGMA + 0.5)
_SSIM_MIN_SIZE = 2 * _SSIM_RADIUS + 1


def psnr(clean: np.ndarray, triggered: np.ndarray) -> np.ndarray:
  """(N,) PSNR in dB of uint8 (N, H, W, C) images; inf where an image is unchanged."""
  difference = clean.astype(np.float64) - triggered.astype(np.float64)
  mse = np.mean(np.square(difference), axis=(1, 2, 3))
  with np.errstate(divide="ignore"):
    return 10.0 * np.log10(255.0**2 / mse)


def ssim(clean: np.ndarray, triggered: np.ndarray) -> np.ndarray:
  """(N,) mean SSIM of uint8 (N, H, W, C) images (module docstring); images need at least
  11 x 11 pixels."""
  if min(clean.shape[1:3]) < _SSIM_MIN_SIZE:
    raise ValueError(f"SSIM needs images of at least 11 x 11 pixels, got {clean.shape[1:3]}.")
  x, y = clean.astype(np.float64), triggered.astype(np.float64)
  window = lambda a: scipy.ndimage.gaussian_filter(
      a, (0, _SSIM_SIGMA, _SSIM_SIGMA, 0), mode="reflect", truncate=_SSIM_TRUNCATE
  )
  mean_x, mean_y = window(x), window(y)
  var_x = window(x * x) - mean_x**2
  var_y = window(y * y) - mean_y**2
  covariance = window(x * y) - mean_x * mean_y
  c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
  index = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)) / (
      (mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2)
  )
  inside = index[:, _SSIM_RADIUS:-_SSIM_RADIUS, _SSIM_RADIUS:-_SSIM_RADIUS]
  return inside.mean(axis=(1, 2, 3))


def _read(images: np.ndarray | Rows, indices: np.ndarray) -> np.ndarray:
  return images.read(indices) if isinstance(images, Rows) else np.asarray(images[indices])


def _round_robin(attack_index: np.ndarray | None, count: int) -> np.ndarray:
  """Test rows in order, or, for several attacks at once, taking each attack's in turn, so
  the picture and the measured pairs show every one of them."""
  if attack_index is None:
    return np.arange(count)
  rank = np.zeros(count, np.int64)
  for attack in np.unique(attack_index):
    members = np.flatnonzero(attack_index == attack)
    rank[members] = np.arange(len(members))
  return np.argsort(rank, kind="stable")


def _pairs(experiment) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
  """(clean, triggered) uint8 images per split, up to MAX_MEASURED each; None when the
  clean images are unknown (a pre-poisoned data set)."""
  train, test = experiment.poisoned_train, experiment.poisoned_test
  if test.source_index is None:
    return None
  rows = np.flatnonzero(train.poison_mask)[:MAX_MEASURED]
  tests = _round_robin(test.attack_index, len(test.source_index))[:MAX_MEASURED]
  return {
      "train": (
          _read(experiment.dataset.train_images, rows),
          _read(train.images, rows),
      ),
      "test": (
          np.asarray(experiment.dataset.test_images)[test.source_index[tests]],
          np.asarray(test.images)[tests],
      ),
  }


def save_examples(path: str, experiment) -> bool:
  """Writes EXAMPLES_FILE's arrays for `experiment` (an experiment.Experiment) to `path`;
  False (nothing written) when its clean images are unknown."""
  pairs = _pairs(experiment)
  if pairs is None:
    return False
  arrays = {}
  for split, (clean, triggered) in pairs.items():
    arrays[f"{split}_clean"] = clean[:NUM_SHOWN]
    arrays[f"{split}_triggered"] = triggered[:NUM_SHOWN]
    arrays[f"{split}_psnr"] = psnr(clean, triggered)
    measurable = len(clean) and min(clean.shape[1:3]) >= _SSIM_MIN_SIZE
    arrays[f"{split}_ssim"] = ssim(clean, triggered) if measurable else np.zeros(0)
  files.save_npz_atomically(path, **arrays)
  return True


def load_examples(workdir: str) -> dict[str, np.ndarray] | None:
  """The workdir's EXAMPLES_FILE, or None if the run wrote none (or it cannot be read)."""
  path = os.path.join(workdir, EXAMPLES_FILE)
  if not os.path.exists(path):
    return None
  try:
    with np.load(path) as stored:
      return {name: stored[name] for name in stored.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile):
    return None


def visibility(examples: dict[str, np.ndarray] | None) -> dict | None:
  """Per split: mean PSNR (dB, over the changed images), mean SSIM, how many pairs were
  measured and how many of them the trigger left unchanged; None without examples."""
  if examples is None:
    return None
  summary = {}
  for split in SPLITS:
    values = examples[f"{split}_psnr"]
    finite = values[np.isfinite(values)]
    ssims = examples[f"{split}_ssim"]
    summary[split] = {
        "psnr": round(float(finite.mean()), 2) if len(finite) else None,
        "ssim": round(float(ssims.mean()), 4) if len(ssims) else None,
        "images": int(len(values)),
        "unchanged": int(len(values) - len(finite)),
    }
  return summary
