"""attack.params.trigger_file: BadNets patches and Blend images read from image files,
checked against a torch transcription of the reference's BadNets.py / Blend.py."""

import numpy as np
import pytest
from PIL import Image

from helpers.attacks import SHAPE, attack, data
from vibe_jax import experiment
from configs import common


def _to_tensor(torch, image: np.ndarray):
  """torchvision's ToTensor on a uint8 HWC array: CHW float32 in [0, 1]."""
  return torch.from_numpy(image.copy()).permute(2, 0, 1).to(torch.float32).div(255)


def _from_tensor(tensor) -> np.ndarray:
  """The reference's way back to uint8: (x * 255).byte(), which truncates."""
  return (tensor * 255).byte().permute(1, 2, 0).numpy()


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])  # apple-logo-imagenet.png: opaque RGBA
def test_badnets_file_is_pasted_as_the_reference_pastes_it(tmp_path, mode):
  torch = pytest.importorskip("torch")
  # An image-sized layer (as the reference's cifar_1.png / apple-logo-imagenet.png), one
  # pixel with a zero channel: the reference keeps the image's value in that channel.
  layer = np.zeros(SHAPE, np.uint8)
  layer[3:6, 9:12] = [200, 10, 90]
  layer[4, 10] = [255, 0, 30]
  path = tmp_path / "logo.png"
  Image.fromarray(layer).convert(mode).save(path)
  images, _ = data(4)
  out = attack("badnets", trigger_file=str(path), row=0, col=0).apply_trigger(images)
  trigger = _to_tensor(torch, np.asarray(Image.open(path).convert("RGB")))
  mask = trigger != 0
  for image, got in zip(images, out):
    expected = _to_tensor(torch, image)
    expected[mask] = trigger[mask]
    np.testing.assert_array_equal(got, _from_tensor(expected))
  assert (out[:, 4, 10, 1] == images[:, 4, 10, 1]).all()


def test_badnets_file_with_transparency_pastes_where_alpha_is_positive(tmp_path):
  patch = np.zeros((3, 2, 4), np.uint8)
  patch[..., :3] = [[[0, 0, 0], [9, 8, 7]], [[1, 2, 3], [4, 5, 6]], [[250, 0, 0], [0, 0, 0]]]
  patch[..., 3] = [[255, 0], [128, 255], [255, 0]]  # (0, 0) is opaque black: pasted
  path = tmp_path / "patch.png"
  Image.fromarray(patch, "RGBA").save(path)
  images, _ = data(2)
  out = attack("badnets", trigger_file=str(path), row=5, col=7).apply_trigger(images)
  expected = images.copy()
  opaque = patch[..., 3] > 0
  expected[:, 5:8, 7:9][:, opaque] = patch[..., :3][opaque]
  np.testing.assert_array_equal(out, expected)


def test_blend_file_is_resized_and_blended_as_the_reference_does(tmp_path):
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  path = tmp_path / "kitty.png"
  Image.fromarray(rng.integers(0, 256, (54, 54, 3), dtype=np.uint8)).save(path)
  images, _ = data(4)
  blend = attack("blend", trigger_file=str(path), alpha=0.1)
  # Blend.py: ToTensor()(Image.open(path).resize((w, h))), then x (1 - r) + t r, .byte().
  trigger = _to_tensor(torch, np.asarray(Image.open(path).resize((32, 32), Image.BICUBIC)))
  expected = [_from_tensor(_to_tensor(torch, x) * (1 - 0.1) + trigger * 0.1) for x in images]
  np.testing.assert_array_equal(blend.apply_trigger(images), np.stack(expected))


def test_trigger_file_errors_name_the_field(tmp_path):
  with pytest.raises(FileNotFoundError, match="attack.params.trigger_file"):
    attack("blend", trigger_file=str(tmp_path / "missing.png"))
  config = common.digits_config("a")
  common.set_attack(config, "badnets", trigger_file=str(tmp_path / "missing.png"))
  with pytest.raises(FileNotFoundError, match="attack.params.trigger_file"):
    experiment.validate_config(config)
  layer = np.zeros(SHAPE, np.uint8)
  layer[0, 0] = 255
  Image.fromarray(layer).save(tmp_path / "layer.png")
  with pytest.raises(ValueError, match="row=0, attack.params.col=0"):
    attack("badnets", trigger_file=str(tmp_path / "layer.png"))  # default row 4, col 4
  Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "black.png")
  with pytest.raises(ValueError, match="pastes nothing"):
    attack("badnets", trigger_file=str(tmp_path / "black.png"))
  (tmp_path / "text.png").write_text("not an image")
  with pytest.raises(ValueError, match="not an image"):
    attack("blend", trigger_file=str(tmp_path / "text.png"))


def test_trigger_file_enters_cache_key_and_identity_by_content(tmp_path):
  from vibe_jax import features, workdir

  path = tmp_path / "trigger.png"
  config = common.digits_config("a")
  common.set_attack(config, "blend", trigger_file=str(path))
  keys, identities = [], []
  for value in (10, 20, 20):
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(path)
    keys.append(features.cache_key(config)["attack"]["params"]["trigger_file"])
    identities.append(dict(workdir.identity_of(config))["attack.params.trigger_file"])
  assert keys[0] != keys[1] == keys[2] and identities[0] != identities[1] == identities[2]
  assert identities[0].startswith("sha256:")
