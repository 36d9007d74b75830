"""BadNets, Blend, WaNet and the poisoning rules (VIBE_SPEC.md section 4)."""

import numpy as np
import pytest

from helpers.attacks import SHAPE, attack, data
from vibe_jax.data.attacks.badnets import REFERENCE_CIFAR_PATCH
from vibe_jax.data.attacks.wanet import warping_grid


def test_badnets_patch_where_the_reference_puts_it():
  images = np.zeros((3, *SHAPE), np.uint8)
  out = attack("badnets").apply_trigger(images)
  np.testing.assert_array_equal(
      out[:, 4:6, 4:6], np.broadcast_to(REFERENCE_CIFAR_PATCH, (3, 2, 2, 3))
  )
  untouched = np.ones(SHAPE[:2], bool)
  untouched[4:6, 4:6] = False
  assert not out[:, untouched].any()
  assert out.dtype == np.uint8


def test_blend_formula():
  images, _ = data(5)
  blend = attack("blend", alpha=0.1)
  expected = np.clip(np.round(0.9 * images.astype(np.float64) + 0.1 * blend.trigger), 0, 255)
  np.testing.assert_allclose(blend.apply_trigger(images), expected, atol=1)


def test_wanet_matches_torch_grid_sample():
  torch = pytest.importorskip("torch")
  functional = torch.nn.functional
  wanet = attack("wanet", grid_size=4, strength=1.0, seed=3)
  # The reference's construction, written with torch ops on the same control field.
  rng = np.random.default_rng(3 + 7919)
  control = rng.uniform(-1.0, 1.0, size=(2, 4, 4))
  control = control / np.mean(np.abs(control))
  flow = functional.interpolate(
      torch.tensor(control)[None], size=32, mode="bicubic", align_corners=True
  )[0].permute(1, 2, 0)
  axis = torch.linspace(-1, 1, 32, dtype=torch.float64)
  grid_y, grid_x = torch.meshgrid(axis, axis, indexing="ij")
  identity = torch.stack([grid_x, grid_y], dim=-1)
  grid = torch.clamp(identity + flow / 32, -1, 1)
  np.testing.assert_allclose(warping_grid(32, 4, 1.0, 3 + 7919), grid.numpy(), atol=1e-10)
  images, _ = data(4)
  expected = (
      functional.grid_sample(
          torch.tensor(images, dtype=torch.float64).permute(0, 3, 1, 2),
          grid[None].repeat(4, 1, 1, 1),
          mode="bilinear",
          align_corners=True,
      )
      .permute(0, 2, 3, 1)
      .numpy()
  )
  out = wanet.apply_trigger(images)
  assert np.abs(out.astype(np.float64) - expected).max() <= 0.5 + 1e-9  # rounding only
  assert (out != images).mean() > 0.2  # the warp really moves pixels


@pytest.mark.parametrize("name", ["badnets", "blend", "wanet"])
def test_poisoned_training_set_rules(name):
  images, labels = data(300)
  poisoned = attack(name, seed=5).poison_train(images, labels)
  mask = poisoned.poison_mask
  assert mask.sum() == round(0.1 * len(labels))  # rate x N, all samples
  assert (labels[mask] != 0).all()  # drawn from non-target classes
  assert (poisoned.labels[mask] == 0).all()
  np.testing.assert_array_equal(poisoned.labels[~mask], labels[~mask])
  np.testing.assert_array_equal(poisoned.true_labels, labels)
  np.testing.assert_array_equal(poisoned.images[~mask], images[~mask])
  assert (poisoned.images[mask] != images[mask]).any(axis=(1, 2, 3)).all()
  assert poisoned.images.dtype == np.uint8
  again = attack(name, seed=5).poison_train(images, labels)
  np.testing.assert_array_equal(again.images, poisoned.images)  # deterministic


def test_poisoned_test_set_excludes_target_class():
  images, labels = data(100)
  test = attack("badnets").poison_test(images, labels)
  assert len(test.true_labels) == (labels != 0).sum()
  assert (test.true_labels != 0).all() and (test.attacker_labels == 0).all()


def test_all_to_all_labels():
  images, labels = data(100)
  bn = attack("badnets", label_mode="all_to_all", target=-1)
  train = bn.poison_train(images, labels)
  mask = train.poison_mask
  np.testing.assert_array_equal(train.labels[mask], (labels[mask] + 1) % 10)
  test = bn.poison_test(images, labels)
  assert len(test.true_labels) == len(labels)
  np.testing.assert_array_equal(test.attacker_labels, (labels + 1) % 10)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(rate=0.0), "attack.rate"),
        (dict(rate=1.5), "attack.rate"),
        (dict(target=10), "attack.target"),
        (dict(target=-1), "attack.target"),
        (dict(label_mode="some"), "attack.label_mode"),
        (dict(alpha=0.1), "attack.params"),
    ],
)
def test_bad_attack_settings_name_the_field(kwargs, field):
  with pytest.raises(ValueError, match=field.replace(".", r"\.")):
    attack("badnets", **kwargs)


def test_unknown_attack_lists_known_ones():
  with pytest.raises(ValueError, match="known: .*badnets.*blend.*wanet"):
    attack("nope")


def test_wanet_grid_size_equal_to_the_image_is_a_per_pixel_field():
  """k = h (the reference's imagenet_k = 224 on 224 x 224): bicubic upsampling with aligned
  corners is the identity, so each pixel gets its own control offset."""
  size, seed = 12, 5
  rng = np.random.default_rng(seed)
  control = rng.uniform(-1.0, 1.0, size=(2, size, size))
  control = control / np.mean(np.abs(control))
  axis = np.linspace(-1.0, 1.0, size)
  identity = np.stack(np.meshgrid(axis, axis, indexing="xy"), axis=-1)
  expected = np.clip(identity + control.transpose(1, 2, 0) / size, -1.0, 1.0)
  np.testing.assert_allclose(warping_grid(size, size, 1.0, seed), expected, atol=1e-12)
  with pytest.raises(ValueError, match="attack.params.grid_size=33 exceeds the 32x32 image"):
    attack("wanet", grid_size=33)
