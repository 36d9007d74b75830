"""The data owner's answers from a defended model: VIBE's label for every training sample,
how sure it is, a suspicion score, the ranked list of rejected labels and a summary per
class; on a benchmark, how well that finds the poison.

Suspicion. The last thing VIBE computes about a training sample is the E-step: ln P[i, l]
= ln p(l | x_i) + ln p(y_i | l, x_i) combines what the image looks like with how likely its
given label y_i is under each clean label l, and Sinkhorn adds the dual potential g_l that
balances the classes to the prior; the pseudo-label is argmax_l (ln P[i, l] + g_l). We score
with the posterior that this argmax comes from,

    q_i(l) = softmax_l(ln P[i, l] + g_l),

at the model's own temperature (the entropic plan itself, at temperature 1/lambda = 1/25,
saturates to 0 and 1 and would tie most samples), and define

    suspicion_i = 1 - q_i(y_i),

the posterior probability that the given label is not the clean one. It is 0 when VIBE is
sure the given label is right, above 1/2 whenever q puts more mass elsewhere than on y_i,
and near 1 for a sample VIBE confidently moves to another class: a poisoned image (a
trigger and a flipped label) whose features still look like its true class. The ranking is
the samples whose given label VIBE rejects (vibe_label != given_label), most suspicious
first.

Every training row is scored, those the Leiden filter dropped too (column `filtered`): the
potentials come from a Sinkhorn solve over the kept rows only (the filtered rows carry no
mass), as in training.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os

import jax.numpy as jnp
import numpy as np
from absl import logging

from vibe_jax import files
from vibe_jax.data import rows as rows_lib
from vibe_jax.em import estep, inference
from vibe_jax.em.loop import EStepSettings
from vibe_jax.models.vibe import VibeModel
from vibe_jax.prepare import TrainingSet

__all__ = [
    "RELABEL_COLUMNS",
    "Relabelling",
    "class_summary",
    "defense_summary",
    "detection_quality",
    "format_summary",
    "posterior_scores",
    "relabel",
    "write_outputs",
]

RELABEL_COLUMNS = (
    "file",
    "given_label",
    "vibe_label",
    "given_confidence",
    "vibe_confidence",
    "filtered",
    "suspicion",
)
TOP_IMAGES = 32  # the suspicious images kept for the report's grid


@dataclasses.dataclass(frozen=True)
class Relabelling:
  """Per training row (in the data set's order): given and VIBE labels (class indices into
  `class_names`), q(given), q(VIBE's label), suspicion = 1 - q(given), and whether the
  Leiden filter dropped the row."""

  class_names: tuple[str, ...]
  sample_names: tuple[str, ...]
  given_labels: np.ndarray
  vibe_labels: np.ndarray
  given_confidence: np.ndarray
  vibe_confidence: np.ndarray
  suspicion: np.ndarray
  filtered: np.ndarray

  @property
  def relabelled(self) -> np.ndarray:
    """(N,) bool: VIBE rejects the given label."""
    return self.vibe_labels != self.given_labels

  def ranking(self) -> np.ndarray:
    """Rows whose given label VIBE rejects, most suspicious first (ties in row order)."""
    rows = np.flatnonzero(self.relabelled)
    return rows[np.argsort(-self.suspicion[rows], kind="stable")]


def posterior_scores(
    ln_p: np.ndarray, label_potentials: np.ndarray, given_labels: np.ndarray
) -> dict[str, np.ndarray]:
  """VIBE's labels, q(given), q(VIBE's label) and the suspicion 1 - q(given) from ln P
  (N, C) and the Sinkhorn potentials g (C,) (module docstring)."""
  logits = np.asarray(ln_p, np.float64) + np.asarray(label_potentials, np.float64)[None, :]
  logits -= logits.max(axis=1, keepdims=True)
  posterior = np.exp(logits)
  posterior /= posterior.sum(axis=1, keepdims=True)
  rows = np.arange(len(posterior))
  vibe_labels = np.argmax(logits, axis=1).astype(np.int32)
  given_confidence = posterior[rows, given_labels]
  return {
      "vibe_labels": vibe_labels,
      "given_confidence": given_confidence,
      "vibe_confidence": posterior[rows, vibe_labels],
      "suspicion": 1.0 - given_confidence,
  }


def relabel(
    model: VibeModel,
    training: TrainingSet,
    keep: np.ndarray,
    settings: EStepSettings,
) -> Relabelling:
  """One E-step of the trained `model` over every training row (the filter's `keep` rows
  carry the Sinkhorn mass), scored as in the module docstring."""
  given = np.asarray(training.given_labels, np.int32)
  ln_p = np.asarray(
      inference.ln_joint(
          model, training.inputs, given, False, settings.batch_size, training.preprocess
      )
  )
  _, solver = estep.sinkhorn_pseudo_labels(
      jnp.asarray(ln_p),
      jnp.exp(model.head.ln_prior()),
      settings.lam,
      valid=jnp.asarray(keep),
      threshold=settings.threshold,
      max_iterations=settings.max_iterations,
      fixed_iterations=settings.fixed_iterations,
      adaptive_momentum=settings.adaptive_momentum,
      semi_dual_steps=settings.semi_dual_steps,
  )
  if not bool(solver.converged):
    logging.warning(
        "The relabelling E-step's Sinkhorn did not converge (marginal error %.3g, "
        "estep.threshold=%g): VIBE's labels and the suspicion are approximate; raise "
        "estep.max_iterations.",
        float(solver.marginal_error),
        settings.threshold,
    )
  scores = posterior_scores(ln_p, np.asarray(solver.g), given)
  num_classes = ln_p.shape[1]
  return Relabelling(
      class_names=tuple(training.class_names) or tuple(str(c) for c in range(num_classes)),
      sample_names=tuple(training.sample_names) or tuple(str(i) for i in range(len(given))),
      given_labels=given,
      filtered=~np.asarray(keep, bool),
      **scores,
  )


def class_summary(relabelling: Relabelling) -> list[dict]:
  """Per class: samples given it, how many VIBE moved away and into which classes, how
  many it moved in. A dirty-label attack shows as one class whose samples VIBE moves back
  to many others."""
  names = relabelling.class_names
  given, vibe = relabelling.given_labels, relabelling.vibe_labels
  summary = []
  for c, name in enumerate(names):
    away = (given == c) & (vibe != c)
    into = np.bincount(vibe[away], minlength=len(names))
    summary.append(
        {
            "class": name,
            "given": int(np.sum(given == c)),
            "relabelled_away": int(away.sum()),
            "into": {names[k]: int(n) for k in np.argsort(-into, kind="stable") if (n := into[k])},
            "relabelled_in": int(np.sum((vibe == c) & (given != c))),
        }
    )
  return summary


def detection_quality(relabelling: Relabelling, poison_mask: np.ndarray) -> dict:
  """On a benchmark (the poison mask known, used here only): "VIBE changed the given label"
  as a poison detector, in BackdoorBench's detection columns (TN, FP, FN, TP, TPR = recall,
  FPR, as its detection_info.csv) plus precision and F1, and the AUROC of the suspicion
  (None when the mask holds one class only)."""
  from sklearn import metrics as sk_metrics  # pylint: disable=import-outside-toplevel

  mask = np.asarray(poison_mask, bool)
  flagged = relabelling.relabelled
  tn, fp, fn, tp = sk_metrics.confusion_matrix(mask, flagged, labels=[False, True]).ravel()
  both = mask.any() and not mask.all()
  return {
      "poisoned": int(mask.sum()),
      "relabelled": int(flagged.sum()),
      **{"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
      "precision": float(sk_metrics.precision_score(mask, flagged, zero_division=0)),
      "recall": float(sk_metrics.recall_score(mask, flagged, zero_division=0)),
      "fpr": float(fp / max(fp + tn, 1)),
      "f1": float(sk_metrics.f1_score(mask, flagged, zero_division=0)),
      "auroc": float(sk_metrics.roc_auc_score(mask, relabelling.suspicion)) if both else None,
  }


def defense_summary(
    relabelling: Relabelling, results: dict, poison_mask: np.ndarray | None = None
) -> dict:
  """What defense.json holds: counts, the per-class summary, the validation accuracy of
  the undefended baseline and of VIBE (when there is a validation set), and the detection
  quality (when `poison_mask`, a benchmark's, is given)."""
  summary = {
      "samples": len(relabelling.given_labels),
      "relabelled": int(relabelling.relabelled.sum()),
      "filtered": int(relabelling.filtered.sum()),
      "classes": class_summary(relabelling),
  }
  if "acc" in results.get("vibe", {}):
    summary["validation_accuracy"] = {
        "before": results.get("baseline", {}).get("acc"),
        "after": results["vibe"]["acc"],
    }
  if poison_mask is not None:
    summary["detection"] = detection_quality(relabelling, poison_mask)
  return summary


def format_summary(summary: dict) -> str:
  """The summary as a few lines for the terminal."""
  lines = [
      f"VIBE relabelled {summary['relabelled']} of {summary['samples']} training samples"
      + (f" (Leiden filter dropped {summary['filtered']})" if summary["filtered"] else "")
      + "; the ranked list is in suspicious.csv, every sample in relabel.csv."
  ]
  for row in summary["classes"]:
    if row["relabelled_away"]:
      into = ", ".join(f"{name} {n}" for name, n in row["into"].items())
      lines.append(
          f"  given {row['class']!r}: {row['relabelled_away']} of {row['given']} moved ({into})"
      )
  accuracy = summary.get("validation_accuracy")
  if accuracy:
    before = "-" if accuracy["before"] is None else f"{100 * accuracy['before']:.2f}"
    lines.append(
        f"Validation accuracy: undefended {before} %, VIBE {100 * accuracy['after']:.2f} %"
    )
  detection = summary.get("detection")
  if detection:
    auroc = "-" if detection["auroc"] is None else f"{detection['auroc']:.4f}"
    lines.append(
        f"Detection (benchmark poison mask): precision {detection['precision']:.4f}, recall "
        f"(TPR) {detection['recall']:.4f}, FPR {detection['fpr']:.4f}, AUROC {auroc}"
    )
  return "\n".join(lines)


def write_outputs(
    workdir: str,
    relabelling: Relabelling,
    summary: dict,
    images: np.ndarray | rows_lib.Rows | None = None,
) -> None:
  """workdir/relabel.csv (every row, data-set order), suspicious.csv (the ranking),
  defense.json (`summary`), and suspicious.npz (the top images for the report's grid,
  when the images are at hand); each written atomically."""
  names = relabelling.class_names
  r = relabelling
  table = io.StringIO()
  writer = csv.writer(table, lineterminator="\n")
  writer.writerow(RELABEL_COLUMNS)
  for i in range(len(r.given_labels)):
    writer.writerow(
        [
            r.sample_names[i],
            names[r.given_labels[i]],
            names[r.vibe_labels[i]],
            f"{r.given_confidence[i]:.6f}",
            f"{r.vibe_confidence[i]:.6f}",
            int(r.filtered[i]),
            f"{r.suspicion[i]:.6f}",
        ]
    )
  files.write_text_atomically(os.path.join(workdir, "relabel.csv"), table.getvalue())
  ranking = r.ranking()
  table = io.StringIO()
  writer = csv.writer(table, lineterminator="\n")
  writer.writerow(("rank", "file", "given_label", "vibe_label", "vibe_confidence", "suspicion"))
  for rank, i in enumerate(ranking, 1):
    writer.writerow(
        [
            rank,
            r.sample_names[i],
            names[r.given_labels[i]],
            names[r.vibe_labels[i]],
            f"{r.vibe_confidence[i]:.6f}",
            f"{r.suspicion[i]:.6f}",
        ]
    )
  files.write_text_atomically(os.path.join(workdir, "suspicious.csv"), table.getvalue())
  files.write_json_atomically(os.path.join(workdir, "defense.json"), summary)
  if images is not None:
    top = ranking[:TOP_IMAGES]
    files.save_npz_atomically(
        os.path.join(workdir, "suspicious.npz"),
        images=rows_lib.as_rows(images).read(top),
        files=np.asarray([r.sample_names[i] for i in top], dtype=str),
        given=np.asarray([names[r.given_labels[i]] for i in top], dtype=str),
        vibe=np.asarray([names[r.vibe_labels[i]] for i in top], dtype=str),
        suspicion=r.suspicion[top],
    )
