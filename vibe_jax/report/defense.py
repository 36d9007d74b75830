"""The report's section of a `--mode defend` run: the summary of defense.json and a grid of
the most suspicious training images (suspicious.npz), given label against VIBE's."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_suspicious_grid", "read_suspicious", "summary_lines"]


def plot_suspicious_grid(suspicious: dict[str, np.ndarray], path: str, columns: int = 8) -> str:
  """The ranked images, most suspicious first, each titled 'given -> VIBE' with its
  suspicion; a ValueError when there are none (VIBE relabelled nothing)."""
  images = suspicious["images"]
  if not len(images):
    raise ValueError("VIBE rejected no given label: no suspicious images to show")
  rows = -(-len(images) // columns)
  figure = Figure(figsize=(1.6 * columns, 1.9 * rows), dpi=110, layout="constrained")
  FigureCanvasAgg(figure)
  axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).reshape(-1)
  for k, ax in enumerate(axes):
    ax.axis("off")
    if k >= len(images):
      continue
    ax.imshow(images[k], interpolation="nearest")
    ax.set_title(
        f"#{k + 1} {suspicious['given'][k]} -> {suspicious['vibe'][k]}\n"
        f"suspicion {float(suspicious['suspicion'][k]):.3f}",
        fontsize=7,
    )
  figure.suptitle("Most suspicious training samples: given label -> VIBE's label", fontsize=10)
  figure.savefig(path)
  return path


def summary_lines(summary: dict) -> list[str]:
  """defense.json as markdown: counts, validation accuracy, detection quality (benchmarks)
  and the per-class table."""
  lines = [
      f"VIBE rejected the given label of {summary['relabelled']} of {summary['samples']} "
      "training samples"
      + (f"; the Leiden filter dropped {summary['filtered']}" if summary["filtered"] else "")
      + ". Every sample with its labels, confidences and suspicion is in `relabel.csv`, the "
      "rejected ones ranked by suspicion (1 - the E-step posterior of the given label) in "
      "`suspicious.csv`.",
      "",
  ]
  accuracy = summary.get("validation_accuracy")
  if accuracy:
    before = "-" if accuracy["before"] is None else f"{100 * accuracy['before']:.2f} %"
    lines += [
        f"Validation accuracy: undefended baseline {before}, VIBE "
        f"{100 * accuracy['after']:.2f} %.",
        "",
    ]
  detection = summary.get("detection")
  if detection:
    auroc = "-" if detection["auroc"] is None else f"{detection['auroc']:.4f}"
    lines += [
        f"Detection against the benchmark's poison mask ({detection['poisoned']} poisoned): "
        f"precision {detection['precision']:.4f}, recall (TPR) {detection['recall']:.4f}, FPR "
        f"{detection['fpr']:.4f} of 'VIBE changed the label'; AUROC of the suspicion {auroc}.",
        "",
    ]
  rows = [
      f"| {row['class']} | {row['given']} | {row['relabelled_away']} | "
      + (", ".join(f"{name} {n}" for name, n in row["into"].items()) or "-")
      + f" | {row['relabelled_in']} |"
      for row in summary["classes"]
  ]
  return lines + [
      "| given class | samples | relabelled away | into | relabelled in |",
      "|---|---|---|---|---|",
      *rows,
      "",
      "A dirty-label attack shows as one class whose samples VIBE moves back to many others.",
  ]


def read_suspicious(workdir: str) -> dict[str, np.ndarray] | None:
  """suspicious.npz's arrays, or None when the run did not write it."""
  path = os.path.join(workdir, "suspicious.npz")
  if not os.path.exists(path):
    return None
  with np.load(path, allow_pickle=False) as npz:
    return {key: npz[key] for key in npz.files}
