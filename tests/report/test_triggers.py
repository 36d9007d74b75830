"""Trigger pictures and visibility (vibe_jax/report/triggers.py): PSNR and SSIM against
independent formulas (a closed form; SSIM as a torch valid convolution, the way
pytorch-msssim writes Wang et al.'s index), and the clean / triggered pairs of a run."""

import numpy as np
import pytest

from configs import common
from vibe_jax import experiment
from vibe_jax.report import triggers


def _torch_ssim(torch, clean: np.ndarray, triggered: np.ndarray) -> np.ndarray:
  """Wang et al. (2004): 11 x 11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, data range
  255, per channel over the valid region, averaged."""
  offsets = torch.arange(11, dtype=torch.float64) - 5
  gauss = torch.exp(-(offsets**2) / (2 * 1.5**2))
  gauss = gauss / gauss.sum()
  window = (gauss[:, None] * gauss[None, :]).expand(3, 1, 11, 11)
  x = torch.from_numpy(clean.astype(np.float64)).permute(0, 3, 1, 2)
  y = torch.from_numpy(triggered.astype(np.float64)).permute(0, 3, 1, 2)
  filt = lambda a: torch.nn.functional.conv2d(a, window, groups=3)
  mu_x, mu_y = filt(x), filt(y)
  sigma_x, sigma_y = filt(x * x) - mu_x**2, filt(y * y) - mu_y**2
  sigma_xy = filt(x * y) - mu_x * mu_y
  c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
  index = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / (
      (mu_x**2 + mu_y**2 + c1) * (sigma_x + sigma_y + c2)
  )
  return index.mean(dim=(1, 2, 3)).numpy()


def test_psnr_and_ssim_against_independent_formulas():
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  clean = rng.integers(0, 256, (3, 20, 17, 3), dtype=np.uint8)
  triggered = np.clip(clean + rng.integers(-40, 41, clean.shape), 0, 255).astype(np.uint8)
  np.testing.assert_allclose(
      triggers.ssim(clean, triggered), _torch_ssim(torch, clean, triggered), rtol=1e-10
  )
  np.testing.assert_allclose(triggers.ssim(clean, clean), 1.0)
  shifted = np.clip(clean.astype(int), 5, 250)
  np.testing.assert_allclose(  # a constant difference d: 20 log10(255 / d)
      triggers.psnr(shifted.astype(np.uint8), (shifted + 5).astype(np.uint8)),
      20 * np.log10(255 / 5),
  )
  assert np.isinf(triggers.psnr(clean, clean)).all()


def test_examples_pair_each_poisoned_image_with_its_original(tmp_path):
  config = common.digits_config("a")
  poisoned = experiment.build_experiment(config)
  assert triggers.save_examples(str(tmp_path / triggers.EXAMPLES_FILE), poisoned)
  examples = triggers.load_examples(str(tmp_path))
  attack = poisoned.attack
  for split in ("train", "test"):
    clean, triggered = examples[f"{split}_clean"], examples[f"{split}_triggered"]
    assert len(clean) == triggers.NUM_SHOWN
    np.testing.assert_array_equal(attack.apply_trigger(clean), triggered)
  summary = triggers.visibility(examples)
  mask = poisoned.poisoned_train.poison_mask
  assert summary["train"]["images"] == min(mask.sum(), triggers.MAX_MEASURED)
  assert summary["test"]["images"] == triggers.MAX_MEASURED
  # Four pasted pixels of 32 x 32: a high PSNR, an SSIM just below 1.
  assert 20 < summary["test"]["psnr"] < 60 and 0.9 < summary["test"]["ssim"] < 1.0
  assert summary["train"]["unchanged"] == 0


def test_several_attacks_take_turns_in_the_examples(tmp_path):
  config = common.digits_config("a")
  common.set_attack(config, "multi")
  poisoned = experiment.build_experiment(config)
  assert triggers.save_examples(str(tmp_path / triggers.EXAMPLES_FILE), poisoned)
  shown = triggers.load_examples(str(tmp_path))
  test = poisoned.poisoned_test
  names = test.attack_names
  # Each shown test pair is one of test's rows; the first len(names) come from each attack.
  first = [
      int(np.flatnonzero((test.images == image).all(axis=(1, 2, 3)))[0])
      for image in shown["test_triggered"][: len(names)]
  ]
  assert sorted(test.attack_index[first]) == list(range(len(names)))
