"""The report's figures, drawn with matplotlib's object API on the Agg canvas.

No pyplot: nothing opens a window, and importing vibe_jax never switches the backend of a
notebook that uses it. Each function takes plain data (log records, snapshot arrays,
predictions), writes one PNG and returns its path.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import PercentFormatter

from vibe_jax.normalize import l2_normalize

__all__ = [
    "PROJECTIONS",
    "plot_confusion",
    "plot_estep",
    "plot_eval",
    "plot_losses",
    "plot_projection",
    "plot_trigger_examples",
    "umap_available",
]

PROJECTIONS = ("pca", "umap")
PHASE_TITLES = {
    "victim": "Undefended deep victim: the whole network, cross-entropy on the given labels",
    "baseline": "Undefended baseline: cross-entropy on the given labels",
    "vibe": "VIBE: -ln P[i, l_i] on the E-step's pseudo-labels",
}
ESTEP_CURVES = (
    ("agree_true", "pseudo-labels = true labels (all samples)", "tab:green", "o"),
    ("poison_restored", "poisoned samples restored to their true label", "tab:red", "s"),
    ("agree_given", "pseudo-labels = given labels", "tab:blue", "^"),
)
EVAL_CURVES = (
    ("acc", "ACC (clean test)", "tab:green"),
    ("asr", "ASR (poisoned test)", "tab:red"),
    ("ra", "RA (poisoned test)", "tab:blue"),
)


def _new_figure(width: float, height: float) -> Figure:
  figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
  FigureCanvasAgg(figure)
  return figure


def _save(figure: Figure, path: str) -> str:
  figure.savefig(path)
  return path


def _series(records: list[dict], phase: str, kind: str, key: str) -> tuple[np.ndarray, np.ndarray]:
  points = sorted(
      (r["step"], r[key])
      for r in records
      if r.get("phase") == phase and r.get("kind") == kind and key in r
  )
  steps, values = zip(*points) if points else ((), ())
  return np.asarray(steps), np.asarray(values, dtype=float)


def _phases_with(records: list[dict], kind: str) -> list[str]:
  phases = []
  for record in records:
    if record.get("kind") == kind and record.get("phase") not in phases:
      phases.append(record["phase"])
  return phases


def plot_losses(records: list[dict], path: str) -> str:
  """Training loss per logging interval of each phase, one panel each (the baseline and
  VIBE minimise different objectives, so their scales differ); E-steps dotted."""
  phases = _phases_with(records, "train")
  if not phases:
    raise ValueError("no train records to plot")
  figure = _new_figure(5.5 * len(phases), 3.8)
  axes = figure.subplots(1, len(phases), squeeze=False)[0]
  for ax, phase in zip(axes, phases):
    steps, losses = _series(records, phase, "train", "loss")
    lr = [r.get("lr") for r in records if r.get("phase") == phase and r.get("kind") == "train"]
    ax.plot(steps, losses, color="tab:blue", lw=1.5, label="loss")
    estep_steps, _ = _series(records, phase, "estep", "agree_true")
    for i, step in enumerate(estep_steps):
      ax.axvline(step, color="gray", ls=":", lw=1, label="E-step" if i == 0 else None)
    if len(losses) and np.all(losses > 0) and losses.max() > 10 * losses.min():
      ax.set_yscale("log")  # only where the loss spans decades; else log ticks are sparse
    title = PHASE_TITLES.get(phase, phase)
    if lr and lr[-1] is not None:
      title += f"\n(lr {lr[-1]:g})"
    ax.set(title=title, xlabel="iteration", ylabel="mean loss over the logging interval")
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  return _save(figure, path)


def plot_estep(records: list[dict], path: str, clean_fraction: float | None = None) -> str:
  """The E-step diagnostics over the iterations: how well the pseudo-labels recover the
  true labels, and the poisoned samples' in particular."""
  steps, _ = _series(records, "vibe", "estep", "agree_true")
  if not len(steps):
    raise ValueError("no E-step records to plot")
  figure = _new_figure(7.0, 4.2)
  ax = figure.subplots()
  for key, label, color, marker in ESTEP_CURVES:
    steps, values = _series(records, "vibe", "estep", key)
    ax.plot(steps, values, color=color, marker=marker, lw=1.5, label=label)
  if clean_fraction is not None:
    ax.axhline(
        clean_fraction,
        color="tab:blue",
        ls=":",
        lw=1,
        label=f"{clean_fraction:.0%} clean: given-label agreement if all poison restored",
    )
  ax.set(
      title="E-step pseudo-labels on the poisoned training set",
      xlabel="iteration",
      ylabel="fraction of training samples",
  )
  ax.yaxis.set_major_formatter(PercentFormatter(1.0))
  ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="lower right")
  return _save(figure, path)


def plot_eval(records: list[dict], path: str) -> str:
  """VIBE's test metrics at each evaluation during training (the last one at the end of the
  run), with the baseline's final metrics for reference (dashed) when logged."""
  steps, _ = _series(records, "vibe", "eval", "acc")
  if not len(steps):
    raise ValueError("no eval records to plot")
  figure = _new_figure(7.0, 4.2)
  ax = figure.subplots()
  for key, label, color in EVAL_CURVES:
    steps, values = _series(records, "vibe", "eval", key)
    ax.plot(steps, values, color=color, marker="o", lw=1.5, label=f"VIBE {label}")
    _, baseline = _series(records, "baseline", "eval", key)
    if len(baseline):
      ax.axhline(baseline[-1], color=color, ls="--", lw=1, label=f"baseline {key.upper()}")
  ax.set(
      title="Defended model on the test sets during training",
      xlabel="iteration",
      ylabel="fraction of test samples",
  )
  ax.yaxis.set_major_formatter(PercentFormatter(1.0))
  ax.set_ylim(-0.02, 1.02)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="center right")
  return _save(figure, path)


def umap_available() -> bool:
  try:
    import umap  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return False
  return True


def _project(features: np.ndarray, prototypes: np.ndarray, method: str, seed: int = 0):
  """2-D coordinates of the samples and, in the same map, of the prototypes."""
  if method == "pca":
    from sklearn.decomposition import PCA  # pylint: disable=import-outside-toplevel

    pca = PCA(n_components=2, random_state=seed).fit(features)
    axes = [
        f"PC {i + 1} ({ratio:.0%} of variance)"
        for i, ratio in enumerate(pca.explained_variance_ratio_)
    ]
    return pca.transform(features), pca.transform(prototypes), axes
  if method == "umap":
    import umap  # pylint: disable=import-outside-toplevel

    reducer = umap.UMAP(n_components=2, metric="cosine", random_state=seed).fit(features)
    return reducer.embedding_, reducer.transform(prototypes), ["UMAP 1", "UMAP 2"]
  raise ValueError(f"projection {method!r} is not one of {PROJECTIONS}.")


def _class_colors(num_classes: int) -> np.ndarray:
  from matplotlib import colormaps  # pylint: disable=import-outside-toplevel

  name = "tab10" if num_classes <= 10 else "tab20" if num_classes <= 20 else "turbo"
  cmap = colormaps[name]
  return np.asarray(
      [cmap(i if num_classes <= 20 else i / max(num_classes - 1, 1)) for i in range(num_classes)]
  )


def plot_projection(snapshots: list[dict[str, np.ndarray]], path: str, method: str = "pca") -> str:
  """The training features in 2-D at the first and the last snapshot E-step, coloured by
  pseudo-label, poisoned samples as crosses, and the prototypes mu_z / mu_y.

  Features and prototypes are L2-normalised before the projection: the head scores cosine
  similarities, so directions are what it sees.
  """
  if not snapshots:
    raise ValueError("no E-step snapshots to plot")
  if method not in PROJECTIONS:
    raise ValueError(f"projection {method!r} is not one of {PROJECTIONS}.")
  shown = [snapshots[0], snapshots[-1]] if len(snapshots) > 1 else snapshots[:1]
  figure = _new_figure(6.5 * len(shown), 6.2)
  axes = figure.subplots(1, len(shown), squeeze=False)[0]
  for ax, snapshot in zip(axes, shown):
    num_classes = snapshot["mu_z"].shape[0]
    colors = _class_colors(num_classes)
    prototypes = l2_normalize(
        np.asarray(np.concatenate([snapshot["mu_z"], snapshot["mu_y"]]), np.float32)
    )
    features = l2_normalize(np.asarray(snapshot["features"], np.float32))
    points, centres, labels = _project(features, prototypes, method)
    pseudo = snapshot["pseudo_labels"]
    poisoned = snapshot["poison_mask"].astype(bool)
    restored = pseudo == snapshot["true_labels"]
    ax.scatter(*points[~poisoned].T, s=10, c=colors[pseudo[~poisoned]], alpha=0.5, linewidths=0)
    for mask, edge in ((poisoned & restored, "black"), (poisoned & ~restored, "red")):
      ax.scatter(
          *points[mask].T, s=30, marker="X", c=colors[pseudo[mask]], edgecolors=edge, linewidths=0.8
      )
    mu_z, mu_y = centres[:num_classes], centres[num_classes:]
    ax.scatter(*mu_y.T, s=150, marker="D", facecolors="none", edgecolors=colors, linewidths=2)
    ax.scatter(*mu_z.T, s=260, marker="*", c=colors, edgecolors="black", linewidths=0.8)
    for label, (x, y) in enumerate(mu_z):
      ax.annotate(
          str(label),
          (x, y),
          xytext=(5, 5),
          textcoords="offset points",
          fontsize=9,
          fontweight="bold",
      )
    count, fixed = int(poisoned.sum()), int((poisoned & restored).sum())
    ax.set(
        title=f"E-step @ iteration {int(snapshot['step'])}: {fixed} of {count} poisoned "
        f"samples restored ({fixed / max(count, 1):.0%})",
        xlabel=labels[0],
        ylabel=labels[1],
    )
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.2)
  # One neutral legend: the colours encode the pseudo-label (samples) or the class (prototypes).
  grey = "0.6"
  handles = [
      Line2D([], [], ls="", marker="o", ms=4, color=grey, label="clean sample"),
      Line2D(
          [],
          [],
          ls="",
          marker="X",
          ms=7,
          mfc=grey,
          mec="black",
          label="poisoned, pseudo-label = true label",
      ),
      Line2D(
          [],
          [],
          ls="",
          marker="X",
          ms=7,
          mfc=grey,
          mec="red",
          label="poisoned, pseudo-label != true label",
      ),
      Line2D(
          [],
          [],
          ls="",
          marker="*",
          ms=13,
          mfc=grey,
          mec="black",
          label="mu_z: class prototype (number: class)",
      ),
      Line2D(
          [],
          [],
          ls="",
          marker="D",
          ms=9,
          mfc="none",
          mec=grey,
          mew=2,
          label="mu_y: given-label prototype",
      ),
  ]
  figure.legend(
      handles=handles,
      loc="outside lower center",
      ncol=3,
      fontsize=8,
      title="colour: pseudo-label (samples), class (prototypes)",
      title_fontsize=8,
  )
  figure.suptitle(
      f"Training features ({method.upper()}, {len(shown[0]['pseudo_labels'])} "
      "samples) with the prototypes",
      fontsize=11,
  )
  return _save(figure, path)


def plot_confusion(predictions: dict[str, np.ndarray], path: str) -> str:
  """Confusion matrices on the poisoned test set (rows: true label, columns: prediction)
  of the undefended models and of VIBE; the attacker's label of each row outlined in red."""
  from sklearn.metrics import confusion_matrix  # pylint: disable=import-outside-toplevel

  num_classes = int(predictions["num_classes"])
  true_labels = predictions["poisoned_true_labels"]
  attacker = predictions["poisoned_attacker_labels"]
  models = [m for m in ("victim", "baseline", "vibe") if f"{m}_poisoned" in predictions]
  if not models:
    raise ValueError("no poisoned-test predictions to plot")
  figure = _new_figure(5.2 * len(models) + 0.8, 5.0)
  axes = figure.subplots(1, len(models), squeeze=False)[0]
  targets = set(zip(true_labels.tolist(), attacker.tolist()))
  image = None
  for ax, model in zip(axes, models):
    predicted = predictions[f"{model}_poisoned"]
    counts = confusion_matrix(true_labels, predicted, labels=np.arange(num_classes))
    fractions = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    if num_classes <= 20:
      for (row, column), count in np.ndenumerate(counts):
        if count:
          ax.text(
              column,
              row,
              str(count),
              ha="center",
              va="center",
              fontsize=7,
              color="white" if fractions[row, column] > 0.6 else "black",
          )
    for row, column in targets:
      ax.add_patch(Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.5))
    asr = np.mean(predicted == attacker)
    ra = np.mean(predicted == true_labels)
    name = {"victim": "Victim (undefended)", "baseline": "Baseline (undefended)"}.get(model, "VIBE")
    ax.set(
        title=f"{name}: ASR {asr:.1%}, RA {ra:.1%}", xlabel="predicted label", ylabel="true label"
    )
    ax.title.set_fontsize(10)
    if num_classes <= 20:
      ax.set_xticks(range(num_classes))
      ax.set_yticks(range(num_classes))
  figure.colorbar(image, ax=list(axes), shrink=0.8, label="fraction of the row (true label)")
  figure.suptitle(
      f"Poisoned test set ({len(true_labels)} triggered images; red: the "
      "attacker's label; counts in the cells)",
      fontsize=10,
  )
  return _save(figure, path)


def plot_trigger_examples(examples: dict[str, np.ndarray], path: str) -> str:
  """Clean and triggered training and test images (report/triggers.py's examples), and
  their difference scaled to its own maximum so that a faint trigger shows."""
  splits = [s for s in ("train", "test") if len(examples.get(f"{s}_clean", ()))]
  if not splits:
    raise ValueError("no poisoned images to show")
  columns = max(len(examples[f"{s}_clean"]) for s in splits)
  figure = _new_figure(1.3 * columns + 1.2, 1.35 * 3 * len(splits) + 0.5)
  axes = figure.subplots(3 * len(splits), columns, squeeze=False)
  for ax in axes.flat:
    ax.set_axis_off()
  split_names = {"train": "training", "test": "test"}
  for block, split in enumerate(splits):
    clean, triggered = examples[f"{split}_clean"], examples[f"{split}_triggered"]
    difference = np.abs(clean.astype(np.int16) - triggered.astype(np.int16)).max(axis=-1)
    rows = (
        (f"{split_names[split]}: clean", clean),
        (f"{split_names[split]}: triggered", triggered),
        ("|difference|, scaled", difference),
    )
    for offset, (label, images) in enumerate(rows):
      row = 3 * block + offset
      for column, image in enumerate(images):
        ax = axes[row, column]
        if image.ndim == 2:
          ax.imshow(image, cmap="magma", vmin=0, vmax=max(int(image.max()), 1))
        else:
          ax.imshow(image, interpolation="nearest")
      axes[row, 0].set_axis_on()
      axes[row, 0].set(xticks=[], yticks=[])
      axes[row, 0].set_ylabel(label, fontsize=8)
  figure.suptitle("Poisoned images next to their clean originals", fontsize=10)
  return _save(figure, path)
