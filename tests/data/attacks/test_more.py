"""FTrojan, Adaptive-Blend/-Patch, label-consistent, UBA and multi (VIBE_SPEC.md section 4),
against references written here; plus one slow digits run per attack."""

from __future__ import annotations

import functools
import importlib

import jax.numpy as jnp
import numpy as np
import pytest

from vibe_jax import metrics, run
from vibe_jax.em import inference
from vibe_jax.prepare import EvalSets
from vibe_jax.data.attacks import (
    ATTACKS,
    PoisonedTestSet,
    PoisonedTrainSet,
    attack_parameters,
    make_attack,
)
from vibe_jax.data.rows import as_rows

SHAPE = (32, 32, 3)
NEW_ATTACKS = (
    "ftrojan",
    "adaptive_blend",
    "adaptive_patch",
    "label_consistent",
    "uba_patch",
    "uba_blend",
    "multi",
)
FAST_LC = dict(surrogate_steps=40, surrogate_hidden=32, pgd_steps=5, batch_size=64)


def data(n=200, classes=10, seed=0, low=0, high=256, shape=SHAPE):
  rng = np.random.default_rng(seed)
  images = rng.integers(low, high, size=(n, *shape), dtype=np.uint8)
  return images, (np.arange(n) % classes).astype(np.int32)


def attack(name, **kw):
  common = dict(num_classes=10, image_shape=kw.pop("shape", SHAPE), target=0, rate=0.1)
  common.update({k: kw.pop(k) for k in list(kw) if k in ("target", "rate", "label_mode", "seed")})
  if name == "label_consistent":
    kw = {**FAST_LC, **kw}
  return make_attack(name, params=kw, **common)


# -- independent references ----------------------------------------------------------------


def dct_matrix(n: int) -> np.ndarray:
  """Orthonormal DCT-II matrix, written out from its definition (not scipy)."""
  k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
  matrix = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
  matrix[0] /= np.sqrt(2.0)
  return matrix


def rgb_to_yuv(rgb: np.ndarray) -> np.ndarray:
  """JPEG (full-range BT.601) luma / blue / red chroma, without offsets."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  y = 0.299 * r + 0.587 * g + 0.114 * b
  return np.stack([y, (b - y) / 1.772, (r - y) / 1.402], axis=-1)


def blockwise_dct(channel: np.ndarray, block: int) -> np.ndarray:
  """(n, h, w) -> per-block 2-D DCT coefficients, same layout."""
  d = dct_matrix(block)
  n, h, w = channel.shape
  blocks = channel.reshape(n, h // block, block, w // block, block)
  coefficients = np.einsum("ki,nbiBj,lj->nbkBl", d, blocks, d)
  return coefficients.reshape(n, h, w)


# -- FTrojan -------------------------------------------------------------------------------


@pytest.mark.parametrize("block,positions", [(32, "15,15 31,31"), (16, "7,7 15,15")])
def test_ftrojan_changes_exactly_the_chosen_dct_coefficients(block, positions):
  ftrojan = attack("ftrojan", magnitude=30.0, block_size=block, positions=positions)
  expected = np.zeros(SHAPE[:2])
  for pos in positions.split():
    r, c = map(int, pos.split(","))
    expected[r::block, c::block] = 30.0
  # The pattern before rounding: +30 at the chosen frequencies of U and V, nothing else.
  yuv = rgb_to_yuv(ftrojan.perturbation[None])
  for channel, want in ((0, np.zeros_like(expected)), (1, expected), (2, expected)):
    np.testing.assert_allclose(blockwise_dct(yuv[..., channel], block)[0], want, atol=1e-4)
  # Applied to images that do not clip, the uint8 change is that pattern rounded; its
  # measured coefficients stay within the rounding error of the intended ones.
  images, _ = data(8, low=60, high=196)
  change = ftrojan.apply_trigger(images).astype(np.float64) - images
  np.testing.assert_array_equal(
      change, np.broadcast_to(np.round(ftrojan.perturbation), change.shape)
  )
  measured = blockwise_dct(rgb_to_yuv(change)[..., 1], block)[0]
  assert np.all(np.abs(measured - expected) < 2.5)
  assert np.all(measured[expected > 0] > 27.0)


def test_ftrojan_clips_to_uint8_and_validates():
  black, white = np.zeros((2, *SHAPE), np.uint8), np.full((2, *SHAPE), 255, np.uint8)
  for images in (black, white):
    out = attack("ftrojan", magnitude=100.0).apply_trigger(images)
    assert out.dtype == np.uint8 and out.shape == images.shape
  with pytest.raises(ValueError, match="block_size"):
    attack("ftrojan", block_size=24)
  with pytest.raises(ValueError, match="positions"):
    attack("ftrojan", positions="32,0")
  with pytest.raises(ValueError, match="channels"):
    attack("ftrojan", channels="uq")


# -- the common contract of every new attack -----------------------------------------------


@pytest.mark.parametrize("name", NEW_ATTACKS)
def test_registered_pure_and_deterministic(name):
  images, labels = data(120)
  original = images.copy()
  first = attack(name).poison_train(images, labels)
  second = attack(name).poison_train(images, labels)
  np.testing.assert_array_equal(images, original)  # inputs untouched
  for a, b in zip(
      (first.images, first.labels, first.poison_mask),
      (second.images, second.labels, second.poison_mask),
  ):
    np.testing.assert_array_equal(a, b)
  assert first.images.dtype == np.uint8 and first.images.shape == images.shape
  np.testing.assert_array_equal(first.true_labels, labels)
  touched = first.poison_mask if first.cover_mask is None else first.poison_mask | first.cover_mask
  clean = ~touched
  np.testing.assert_array_equal(first.images[clean], images[clean])
  np.testing.assert_array_equal(first.labels[clean], labels[clean])
  test = attack(name).poison_test(images, labels)
  assert test.images.dtype == np.uint8 and test.images.shape[1:] == SHAPE
  assert len(test.images) == len(test.true_labels) == len(test.attacker_labels)
  assert np.all(test.attacker_labels != test.true_labels)
  if name != "multi":
    other = attack(name, seed=1).poison_train(images, labels)
    assert not np.array_equal(other.poison_mask, first.poison_mask)


def test_result_types_stay_backward_compatible():
  images, labels = data(4)
  mask = np.zeros(4, bool)
  assert PoisonedTrainSet(images, labels, labels, mask).cover_mask is None
  test = PoisonedTestSet(images, labels, labels)
  assert test.attack_index is None and test.attack_names == ()
  assert "cover_rate" in attack_parameters(ATTACKS.get("adaptive_blend"))
  assert "num_poisoned" in attack_parameters(ATTACKS.get("uba_patch"))


# -- Adaptive ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["adaptive_blend", "adaptive_patch"])
def test_adaptive_counts_and_cover_samples_keep_labels(name):
  images, labels = data(400)
  out = attack(name, rate=0.05, cover_rate=0.03).poison_train(images, labels)
  poison, cover = out.poison_mask, out.cover_mask
  assert poison.sum() == 20 and cover.sum() == 12 and not (poison & cover).any()
  assert np.all(out.labels[poison] == 0) and np.all(labels[poison] != 0)
  np.testing.assert_array_equal(out.labels[cover], labels[cover])  # cover: true labels
  changed = np.any(out.images != images, axis=(1, 2, 3))
  assert changed[cover].all() and changed[poison].all()


def test_adaptive_blend_pieces_and_alphas():
  images, labels = data(200)
  blend = attack("adaptive_blend", rate=0.1, cover_rate=0.05)
  out = blend.poison_train(images, labels)
  x = images.astype(np.float64)
  weak = np.round(x + 0.15 * (blend.trigger - x))
  for i in np.flatnonzero(out.poison_mask | out.cover_mask):
    kept = 0
    for r in range(0, 32, 8):
      for c in range(0, 32, 8):
        piece = out.images[i, r : r + 8, c : c + 8]
        if np.array_equal(piece, images[i, r : r + 8, c : c + 8]):
          continue
        np.testing.assert_allclose(piece, weak[i, r : r + 8, c : c + 8], atol=1)
        kept += 1
    assert kept == 8  # half of the 16 pieces left out
  full = blend.apply_trigger(images[:5])
  np.testing.assert_allclose(full, np.round(x[:5] + 0.2 * (blend.trigger - x[:5])), atol=1)


def test_adaptive_patch_subset_at_train_all_at_test():
  images, labels = data(200)
  patch = attack("adaptive_patch", rate=0.1, patches_per_sample=2, train_alpha=0.5)
  regions = [(r, c) for r, c in patch.positions]
  size = patch.patch_size
  inside = np.zeros(SHAPE[:2], bool)
  for r, c in regions:
    inside[r : r + size, c : c + size] = True
  out = patch.poison_train(images, labels)
  for i in np.flatnonzero(out.poison_mask):
    np.testing.assert_array_equal(out.images[i][~inside], images[i][~inside])
    touched = [
        not np.array_equal(
            out.images[i, r : r + size, c : c + size], images[i, r : r + size, c : c + size]
        )
        for r, c in regions
    ]
    assert sum(touched) == 2
  full = patch.apply_trigger(images[:3])
  for k, (r, c) in enumerate(regions):  # test_alpha 1: the patch itself
    np.testing.assert_array_equal(
        full[:, r : r + size, c : c + size], np.broadcast_to(patch.patches[k], (3, size, size, 3))
    )


# -- label-consistent ----------------------------------------------------------------------


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


# -- UBA -----------------------------------------------------------------------------------


def test_uba_patch_one_distinct_code_per_class():
  uba = attack("uba_patch")
  size = uba.patches.shape[1]
  flat = uba.patches.reshape(10, -1)
  assert len({row.tobytes() for row in flat}) == 10
  images, labels = data(300)
  out = uba.poison_train(images, labels)
  poisoned = np.flatnonzero(out.poison_mask)
  assert len(poisoned) == 30
  assert np.all(out.labels[poisoned] != labels[poisoned])
  for i in poisoned:
    np.testing.assert_array_equal(out.images[i, -size:, -size:], uba.patches[out.labels[i]])
  test = uba.poison_test(images, labels)
  assert len(test.images) == len(images)  # every test image, trigger of another class
  for image, t in zip(test.images, test.attacker_labels):
    np.testing.assert_array_equal(image[-size:, -size:], uba.patches[t])
  assert set(test.attacker_labels) == set(range(10))


def test_uba_blend_formula_and_count():
  uba = attack("uba_blend", alpha=0.1, num_poisoned=25)
  assert len({t.tobytes() for t in uba.triggers}) == 10
  images, labels = data(200)
  out = uba.poison_train(images, labels)
  poisoned = np.flatnonzero(out.poison_mask)
  assert len(poisoned) == 25
  x = images[poisoned].astype(np.float64)
  expected = np.round(0.9 * x + 0.1 * uba.triggers[out.labels[poisoned]])
  np.testing.assert_allclose(out.images[poisoned], expected, atol=1)


def test_asr_counts_the_class_whose_trigger_an_image_carries():
  true = np.array([1, 2, 3, 4])
  wanted = np.array([5, 6, 7, 8])
  predicted = np.array([5, 6, 3, 0])
  result = metrics.defense_metrics(true, true, predicted, true, wanted)
  assert result["asr"] == 0.5 and result["ra"] == 0.25


# -- multi ---------------------------------------------------------------------------------


def test_multi_disjoint_samples_own_targets():
  images, labels = data(400)
  multi = attack("multi", attacks="badnets,blend,wanet", targets="0,1,2")
  out = multi.poison_train(images, labels)
  assert out.poison_mask.sum() == 3 * 40
  for k, sub in enumerate(multi.attacks):
    members = out.poison_mask & (out.labels == k)  # each target belongs to one attack
    assert members.sum() == 40 and np.all(labels[members] != k)
    np.testing.assert_array_equal(out.images[members], sub.apply_trigger(images[members]))
  test = multi.poison_test(images, labels)
  assert test.attack_names == ("badnets", "blend", "wanet")
  for k in range(3):
    rows = test.attack_index == k
    assert rows.sum() == np.sum(labels != k) and np.all(test.attacker_labels[rows] == k)


def test_multi_validates_its_parts():
  with pytest.raises(ValueError, match="own poisoning scheme"):
    attack("multi", attacks="badnets,adaptive_blend", targets="0,1")
  with pytest.raises(ValueError, match="one target per attack"):
    attack("multi", attacks="badnets,blend", targets="0")
  with pytest.raises(ValueError, match="known"):
    attack("multi", attacks="badnets,nope", targets="0,1")
  repeated = attack(
      "multi", attacks="badnets,badnets", targets="0,1", sub_params={"badnets": {"row": 20}}
  )
  assert repeated.names == ("badnets_0", "badnets_1") and repeated.attacks[1].row == 20


def test_per_attack_metrics_against_a_loop():
  rng = np.random.default_rng(0)
  index = rng.integers(0, 3, 90)
  wanted, true = index.copy(), (index + 1 + rng.integers(0, 8, 90)) % 10
  predicted = np.where(rng.random(90) < 0.6, wanted, true)
  names = ("badnets", "blend", "wanet")
  got = metrics.per_attack_metrics(predicted, true, wanted, index, names)
  for k, name in enumerate(names):
    rows = [i for i in range(90) if index[i] == k]
    assert got[f"asr/{name}"] == pytest.approx(np.mean([predicted[i] == wanted[i] for i in rows]))
    assert got[f"ra/{name}"] == pytest.approx(np.mean([predicted[i] == true[i] for i in rows]))


def test_evaluate_adds_per_attack_entries(monkeypatch):
  images, labels = data(60)
  test = attack("multi", attacks="badnets,blend", targets="0,1").poison_test(images, labels)
  poisoned_predictions = test.attacker_labels.copy()  # badnets succeeds, blend fails
  blend_rows = test.attack_index == 1
  poisoned_predictions[blend_rows] = test.true_labels[blend_rows]
  clean_inputs, poisoned_inputs = jnp.zeros((60, 1)), jnp.ones((len(test.images), 1))
  fake = lambda model, inputs, preprocess=None: (
      poisoned_predictions if inputs[0, 0] == 1 else labels
  )
  monkeypatch.setattr(inference, "predict", fake)
  eval_sets = EvalSets(
      clean_inputs=clean_inputs,
      clean_labels=labels,
      poisoned_inputs=poisoned_inputs,
      poisoned_true_labels=test.true_labels,
      attacker_labels=test.attacker_labels,
      attack_index=test.attack_index,
      attack_names=test.attack_names,
  )
  result = eval_sets.evaluate(None)
  assert result["acc"] == 1.0
  assert result["asr/badnets"] == 1.0 and result["asr/blend"] == 0.0 and result["ra/blend"] == 1.0


# -- every digits config builds its attack -------------------------------------------------


@pytest.mark.parametrize("name", NEW_ATTACKS)
@pytest.mark.parametrize("variant", ["a", "f"])
def test_digits_configs_build(name, variant):
  config = importlib.import_module(f"configs.digits_{name}").get_config(variant)
  assert config.attack.name == name and config.variant == variant
  make_attack(
      config.attack.name,
      num_classes=10,
      image_shape=SHAPE,
      target=config.attack.target,
      rate=config.attack.rate,
      label_mode=config.attack.label_mode,
      seed=config.attack.seed,
      params=config.attack.params.to_dict(),
  )


# -- end to end on digits (slow) -----------------------------------------------------------


@functools.lru_cache(maxsize=None)
def clean_reference_accuracy() -> float:
  """Test ACC of the undefended baseline trained on the *clean* digits training set, with
  the digits configs' features, head and schedule."""
  from flax import nnx
  from vibe_jax import features as features_lib, parallel
  from vibe_jax.data import datasets
  from vibe_jax.em import inference, loop
  from vibe_jax.em.data import shard_training_data
  from vibe_jax.models.vibe import VibeHead, VibeModel, class_centroids

  config = importlib.import_module("configs.digits_badnets").get_config()
  dataset = datasets.load_dataset("digits", seed=config.dataset.split_seed)
  extract = features_lib.make_extractor(config, dataset.train_images)
  train, labels = extract(dataset.train_images), dataset.train_labels
  mesh = parallel.make_mesh(1)
  centroids = class_centroids(jnp.asarray(train), jnp.asarray(labels), dataset.num_classes)
  head = VibeHead(
      dataset.num_classes,
      centroids.shape[-1],
      kappa=config.baseline.kappa,
      nu=config.vibe.nu,
      prior_temperature=config.vibe.prior_temperature,
      likelihood="a",
      rngs=nnx.Rngs(config.seed),
      mu_z=centroids,
      mu_y=centroids,
  )
  data = shard_training_data(train, labels, labels, np.zeros(len(labels), bool), mesh)
  baseline = loop.phases(config, train_mu_y=True)[0]
  model = loop.fit(VibeModel(head), data, baseline, mesh=mesh)
  predictions = inference.predict(model, parallel.replicate(extract(dataset.test_images), mesh))
  return metrics.accuracy(predictions, dataset.test_labels)


# (attack, baseline ASR at least, VIBE ASR at most), variant A. Measured at seed 0:
#   label_consistent (the reference's 25 % of class 0): baseline 14.6 %, VIBE 1.6 %. A linear
#     head on pixels keeps the clean evidence of every digit, so this clean-label attack
#     implants weakly on digits (configs/digits_label_consistent.py says why); bound 10 %.
#   uba_patch: VIBE-A 5.6 % (seed 0; 3.5, 3.9, 2.2, 4.8 % at seeds 1-4; a clean model scores
#     0.6 %): an input-agnostic p(y|l) sees many-to-many flips as symmetric label noise and
#     leaves a small residual; VIBE-F reaches 1.7 %. Bound 8 %.
E2E = [
    ("ftrojan", 0.70, 0.05),
    ("adaptive_blend", 0.70, 0.05),
    ("adaptive_patch", 0.70, 0.05),
    ("label_consistent", 0.10, 0.05),
    ("uba_patch", 0.70, 0.08),
    ("uba_blend", 0.70, 0.05),
    ("multi", 0.70, 0.05),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,baseline_asr,vibe_asr", E2E, ids=[e[0] for e in E2E])
def test_vibe_defends_digits(tmp_path, name, baseline_asr, vibe_asr):
  config = importlib.import_module(f"configs.digits_{name}").get_config("a")
  results = run.train_and_evaluate(config, str(tmp_path))
  assert results["baseline"]["asr"] >= baseline_asr, results
  assert results["vibe"]["asr"] <= vibe_asr, results
  assert results["vibe"]["asr"] < results["baseline"]["asr"], results
  assert results["vibe"]["acc"] >= clean_reference_accuracy() - 0.03, results
  if name == "multi":
    for sub in ("badnets", "blend", "wanet"):
      assert results["baseline"][f"asr/{sub}"] >= 0.7 and results["vibe"][f"asr/{sub}"] <= 0.05


ROW_BY_ROW = ("badnets", "blend", "wanet", "ftrojan", "uba_patch", "uba_blend")


@pytest.mark.parametrize("name", ROW_BY_ROW)
def test_poisoning_rows_on_demand_equals_poisoning_the_whole_set(name):
  """Per-host loading: rows read in any order, in pieces, match poison_train's rows."""
  images, labels = data(120)
  whole = attack(name).poison_train(images, labels)
  lazy = attack(name).poison_train_rows(as_rows(images), labels)
  for field in ("labels", "true_labels", "poison_mask"):
    np.testing.assert_array_equal(getattr(lazy, field), getattr(whole, field))
  rows = np.random.default_rng(1).permutation(120)
  for piece in np.array_split(rows, 3):
    np.testing.assert_array_equal(lazy.images.read(piece), whole.images[piece])
  assert not np.array_equal(whole.images, images)  # something was poisoned


@pytest.mark.parametrize(
    "name", ["label_consistent", "adaptive_patch", "adaptive_blend", "multi", "prepoisoned"]
)
def test_attacks_that_need_the_whole_set_refuse_row_by_row_poisoning(name):
  cls = ATTACKS.get(name)
  assert not cls.poisons_row_by_row()
  images, labels = data(40)
  instance = object.__new__(cls)  # the check comes before any use of the instance
  with pytest.raises(ValueError, match="parallel.per_host_loading=False"):
    cls.poison_train_rows(instance, as_rows(images), labels)
  assert all(ATTACKS.get(row_by_row).poisons_row_by_row() for row_by_row in ROW_BY_ROW)
