"""The suspicion score, the ranking, the per-class summary, the detection metrics and
relabel.csv, against numpy / scipy written out here; the Sinkhorn potentials against the
transport plan they define."""

import csv
import json

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import softmax

from vibe_jax import relabel
from vibe_jax.em.estep import sinkhorn_pseudo_labels


def relabelling(given, vibe, suspicion, filtered=None, names=("a", "b", "c")):
  given, vibe = np.asarray(given), np.asarray(vibe)
  return relabel.Relabelling(
      class_names=names,
      sample_names=tuple(f"img{i}.png" for i in range(len(given))),
      given_labels=given,
      vibe_labels=vibe,
      given_confidence=1.0 - np.asarray(suspicion),
      vibe_confidence=np.full(len(given), 0.9),
      suspicion=np.asarray(suspicion, float),
      filtered=np.zeros(len(given), bool) if filtered is None else np.asarray(filtered),
  )


def test_posterior_scores_are_the_softmax_of_ln_p_plus_potentials():
  rng = np.random.default_rng(0)
  ln_p, g = np.log(rng.dirichlet(np.ones(4), size=50)), rng.normal(size=4)
  given = rng.integers(0, 4, 50)
  scores = relabel.posterior_scores(ln_p, g, given)
  q = softmax(ln_p + g, axis=1)
  np.testing.assert_array_equal(scores["vibe_labels"], q.argmax(1))
  np.testing.assert_allclose(scores["given_confidence"], q[np.arange(50), given], rtol=1e-12)
  np.testing.assert_allclose(scores["vibe_confidence"], q.max(1), rtol=1e-12)
  np.testing.assert_allclose(scores["suspicion"], 1.0 - q[np.arange(50), given], rtol=1e-12)


def test_sinkhorn_potentials_define_the_plan_and_the_labels():
  """g is the dual potential of the E-step: rows of exp(lam (ln P + g)) normalised to 1/N
  have the prior as column sums, and their argmax are the pseudo-labels."""
  rng = np.random.default_rng(1)
  ln_p = np.log(rng.dirichlet(np.ones(6), size=600) + 1e-12)
  prior = rng.dirichlet(np.full(6, 5.0))
  labels, stats = sinkhorn_pseudo_labels(
      jnp.asarray(ln_p), jnp.asarray(prior), 25.0, threshold=1e-6
  )
  g = np.asarray(stats.g, np.float64)
  plan = softmax(25.0 * (ln_p + g), axis=1) / len(ln_p)
  np.testing.assert_allclose(plan.sum(0), prior, atol=2e-5)
  np.testing.assert_array_equal(np.asarray(labels), np.argmax(ln_p + g, axis=1))


def test_ranking_holds_the_rejected_labels_most_suspicious_first():
  r = relabelling(given=[0, 0, 1, 2, 2], vibe=[1, 0, 2, 2, 0], suspicion=[0.7, 0.9, 0.95, 0.1, 0.7])
  np.testing.assert_array_equal(r.ranking(), [2, 0, 4])  # row 1 is accepted; ties by row


def test_class_summary_counts_moves_out_and_in():
  r = relabelling(given=[0, 0, 0, 1, 2], vibe=[1, 2, 1, 1, 2], suspicion=[0.9] * 5)
  summary = {row["class"]: row for row in relabel.class_summary(r)}
  assert summary["a"] == {
      "class": "a",
      "given": 3,
      "relabelled_away": 3,
      "into": {"b": 2, "c": 1},
      "relabelled_in": 0,
  }
  assert summary["b"]["relabelled_in"] == 2 and summary["c"]["relabelled_in"] == 1


def test_detection_quality_against_hand_counts():
  mask = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
  r = relabelling(
      given=[0] * 8,
      vibe=[1, 1, 0, 1, 0, 0, 0, 0],  # flags rows 0, 1 (poisoned) and 3 (clean)
      suspicion=[0.9, 0.8, 0.3, 0.85, 0.1, 0.2, 0.3, 0.05],
      names=("a", "b"),
  )
  quality = relabel.detection_quality(r, mask)
  # AUROC = P(score of a poisoned > score of a clean), ties half: pairs counted by hand.
  pairs = [(p, c) for p in r.suspicion[mask] for c in r.suspicion[~mask]]
  auroc = np.mean([1.0 if p > c else 0.5 if p == c else 0.0 for p, c in pairs])
  assert quality == pytest.approx(
      {
          "poisoned": 3,
          "relabelled": 3,
          **{"tn": 4, "fp": 1, "fn": 1, "tp": 2},
          "precision": 2 / 3,
          "recall": 2 / 3,
          "fpr": 1 / 5,
          "f1": 2 / 3,
          "auroc": auroc,
      }
  )


def test_outputs_have_the_issue_columns_and_class_names(tmp_path):
  r = relabelling(given=[0, 1, 2], vibe=[2, 1, 2], suspicion=[0.99, 0.0, 0.25], filtered=[0, 0, 1])
  summary = relabel.defense_summary(r, {"baseline": {"acc": 0.5}, "vibe": {"acc": 0.75}})
  images = np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3)
  relabel.write_outputs(str(tmp_path), r, summary, images)
  with open(tmp_path / "relabel.csv") as f:
    rows = list(csv.DictReader(f))
  assert (
      tuple(rows[0])
      == relabel.RELABEL_COLUMNS
      == (
          "file",
          "given_label",
          "vibe_label",
          "given_confidence",
          "vibe_confidence",
          "filtered",
          "suspicion",
      )
  )
  assert [(row["file"], row["given_label"], row["vibe_label"]) for row in rows] == [
      ("img0.png", "a", "c"),
      ("img1.png", "b", "b"),
      ("img2.png", "c", "c"),
  ]
  assert [row["filtered"] for row in rows] == ["0", "0", "1"]
  assert float(rows[0]["suspicion"]) == 0.99
  with open(tmp_path / "suspicious.csv") as f:
    assert [row["file"] for row in csv.DictReader(f)] == ["img0.png"]
  saved = json.loads((tmp_path / "defense.json").read_text())
  assert saved["validation_accuracy"] == {"before": 0.5, "after": 0.75}
  assert (saved["relabelled"], saved["filtered"], saved["samples"]) == (1, 1, 3)
  with np.load(tmp_path / "suspicious.npz") as npz:
    np.testing.assert_array_equal(npz["images"], images[:1])
    assert list(npz["given"]) == ["a"] and list(npz["vibe"]) == ["c"]
