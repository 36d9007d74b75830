"""report.md and workdir/plots/*.png from whatever a run left in its workdir.

A finished run has config.json, log.jsonl, snapshots/, predictions.npz and results.json; an
interrupted one has a prefix of these. Each section is written from what exists, and a
missing piece is replaced by a note saying what is missing and why it may be, so the report
of a run killed at any point still reads.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Callable

from vibe_jax import files, metrics
from vibe_jax import workdir as workdir_lib
from vibe_jax.report import defense, plots, snapshots, triggers, writers
from vibe_jax.report import predictions as predictions_lib

__all__ = ["write_report"]

PLOTS = "plots"
CONFIG_FIELDS = (  # (label, dotted path) of the summary table
    ("dataset", "dataset.name"),
    ("attack", "attack.name"),
    ("poisoning rate", "attack.rate"),
    ("target", "attack.target"),
    ("label mode", "attack.label_mode"),
    ("attack parameters", "attack.params"),
    ("variant", "variant"),
    ("features", "features.extractor"),
    ("backbone checkpoint", "backbone.checkpoint"),
    ("Leiden filter", "filter.leiden"),
    ("VIBE iterations", "train.steps"),
    ("batch size", "train.batch_size"),
    ("lr / prior lr", ("train.lr", "train.prior_lr")),
    ("E-step period / lambda", ("estep.period", "estep.lam")),
    ("kappa / nu / prior temperature", ("vibe.kappa", "vibe.nu", "vibe.prior_temperature")),
    ("baseline iterations", "baseline.steps"),
    ("baseline lr / kappa", ("baseline.lr", "baseline.kappa")),
    ("seed", "seed"),
)


def _lookup(config: dict, dotted: str):
  node = config
  for part in dotted.split("."):
    if not isinstance(node, dict) or part not in node:
      return None
    node = node[part]
  return node


def _format_value(value) -> str:
  if isinstance(value, dict):
    return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
  return "-" if value in (None, "") else str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
  return [
      "| " + " | ".join(header) + " |",
      "|" + "---|" * len(header),
      *("| " + " | ".join(row) + " |" for row in rows),
  ]


def _percent(value: float | None) -> str:
  return "-" if value is None else f"{100 * value:.2f}"


def _read_json(path: str) -> dict | None:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _config_section(config: dict | None) -> list[str]:
  if config is None:
    return ["_No config.json in the workdir and no --config given: configuration unknown._"]
  rows = []
  for label, dotted in CONFIG_FIELDS:
    paths = dotted if isinstance(dotted, tuple) else (dotted,)
    values = [_lookup(config, path) for path in paths]
    if all(v is None for v in values):
      continue
    rows.append([label, " / ".join(_format_value(v) for v in values)])
  return _table(["field", "value"], rows) + ["", "The full resolved config is in " "`config.json`."]


def _status(results: dict | None, records: list[dict], config: dict | None) -> str:
  if results is not None:
    if "timing" in results:
      return f"Finished run. {metrics.format_timing(results)}."
    return f"Finished run ({results.get('seconds', '?')} s)."
  done = []
  for phase, field in (
      ("victim", "victim.steps"),
      ("baseline", "baseline.steps"),
      ("vibe", "train.steps"),
  ):
    steps = [r["step"] for r in records if r["phase"] == phase and r["kind"] == "train"]
    total = _lookup(config, field) if config else None
    if steps or total:
      done.append(f"{phase} {max(steps) if steps else 0} / {total or '?'} iterations")
  return (
      "**Unfinished run** (no results.json: interrupted, or still running). Logged so "
      "far: " + (", ".join(done) if done else "nothing") + "."
  )


def _results_section(results: dict | None, records: list[dict], variant: str) -> list[str]:
  header = ["model", "ACC", "ASR", "RA"]
  if results is not None:
    rows = [
        [
            metrics.result_label(name, variant),
            *(_percent(results[name].get(m)) for m in ("acc", "asr", "ra")),
        ]
        for name in metrics.RESULT_ROWS
        if name in results
    ]
    lines = _table(header, rows)
    if "leiden_filter" in results:
      lines += [
          "",
          "Leiden filter: " + ", ".join(f"{k} {v}" for k, v in results["leiden_filter"].items()),
      ]
    return [
        "Percent, on the clean test set (ACC) and on the triggered test set (ASR: the "
        "attacker's label; RA: the true label).",
        "",
    ] + lines
  rows = []
  for name in metrics.RESULT_ROWS:
    evals = [r for r in records if r["phase"] == name and r["kind"] == "eval"]
    if evals:
      last = max(evals, key=lambda r: r["step"])
      label = metrics.result_label(name, variant)
      rows.append(
          [
              f"{label} @ iteration {last['step']}",
              *(_percent(last.get(m)) for m in ("acc", "asr", "ra")),
          ]
      )
  if not rows:
    return ["_No results.json and no evaluation logged yet: no results to show._"]
  return [
      "_No results.json: the last logged evaluation of each model (percent)._",
      "",
      *_table(header, rows),
  ]


def _defense_section(workdir: str, grid_path: str) -> list[str]:
  """The suspicious training samples of a --mode defend run (nothing for other runs)."""
  summary = _read_json(os.path.join(workdir, "defense.json"))
  if summary is None:
    return []
  suspicious = defense.read_suspicious(workdir)
  return [
      "## Suspicious training samples",
      "",
      *defense.summary_lines(summary),
      "",
      *_plot_or_note(
          "Most suspicious samples",
          "The training samples whose given label VIBE rejects, most suspicious first: "
          "given label -> VIBE's label.",
          (lambda p: defense.plot_suspicious_grid(suspicious, p))
          if suspicious is not None
          else None,
          grid_path,
          "no suspicious.npz (written by --mode defend with the report on and the images "
          "at hand, not from a features file)",
          workdir,
      ),
  ]


def _estep_section(records: list[dict]) -> list[str]:
  esteps = sorted(
      (r for r in records if r["phase"] == "vibe" and r["kind"] == "estep"), key=lambda r: r["step"]
  )
  if not esteps:
    return ["_No E-step logged (the VIBE phase has not started)._"]
  rows = [
      [
          str(r["step"]),
          _percent(r.get("agree_true")),
          _percent(r.get("poison_restored")),
          _percent(r.get("agree_given")),
          str(r.get("sinkhorn_iterations", "-")),
          f"{r['seconds']:.1f}" if "seconds" in r else "-",
      ]
      for r in esteps
  ]
  return (
      [
          "Percent of the training samples whose pseudo-label equals the true label, of "
          "the poisoned ones restored to their true label, and of all agreeing with the "
          "given label.",
          "",
      ]
      + _table(
          [
              "iteration",
              "pseudo-label = true",
              "poison restored",
              "pseudo-label = given",
              "Sinkhorn iterations",
              "seconds",
          ],
          rows,
      )
      + _not_converged(esteps)
  )


def _not_converged(esteps: list[dict]) -> list[str]:
  """A note on the E-steps whose Sinkhorn did not converge (approximate pseudo-labels)."""
  late = [str(r["step"]) for r in esteps if r.get("sinkhorn_converged") == 0]
  if not late:
    return []
  return [
      "",
      f"Sinkhorn did not converge at the E-step(s) of iteration(s) {', '.join(late)} "
      "(marginal error above estep.threshold): their pseudo-labels are approximate.",
  ]


def _plot_or_note(
    title: str,
    caption: str,
    draw: Callable[[str], str] | None,
    path: str,
    missing: str,
    workdir: str,
) -> list[str]:
  """Draws one figure (when its data exists) and returns its markdown section. A skipped
  figure's old PNG is removed, so plots/ always matches report.md."""
  lines = [f"### {title}", ""]
  try:
    if draw is None:
      raise ValueError(missing)
    draw(path)
  except ValueError as error:
    if os.path.exists(path):
      os.remove(path)
    return lines + [f"_Skipped: {error}._", ""]
  relative = os.path.relpath(path, workdir).replace(os.sep, "/")
  return lines + [caption, "", f"![{title}]({relative})", ""]


def _trigger_section(examples: dict | None) -> list[str]:
  """PSNR / SSIM of the triggered images against their clean originals."""
  summary = triggers.visibility(examples)
  if summary is None:
    return [
        "_No trigger_examples.npz: the run used a features file or a pre-poisoned data set "
        "(no clean originals), had the report off, or predates trigger pictures._"
    ]
  rows = []
  for split, name in (("train", "training (poisoned rows)"), ("test", "test (triggered)")):
    item = summary[split]
    psnr = "-" if item["psnr"] is None else f"{item['psnr']:.2f}"
    ssim = "-" if item["ssim"] is None else f"{item['ssim']:.4f}"
    rows.append([name, psnr, ssim, str(item["images"]), str(item["unchanged"])])
  return [
      "How visible the trigger is (BackdoorBench's visual-quality measures): PSNR in dB "
      "(higher: less visible; unchanged images left out) and SSIM (1: identical) of each "
      "poisoned image against its clean original, averaged over the first "
      f"{triggers.MAX_MEASURED} of each set.",
      "",
      *_table(["images", "PSNR (dB)", "SSIM", "measured", "unchanged"], rows),
  ]


def _check_experiment(workdir: str, stored: dict | None, given: dict | None) -> None:
  """Refuses a --config of another experiment than the workdir's, and a config.json that
  is not the one experiment.json records (vibe_jax.workdir): a report titled with the wrong
  attack or variant is worse than none."""
  recorded = workdir_lib.recorded_identity(workdir)
  if recorded is None:
    return
  for name, config in (("--config", given), ("config.json", stored)):
    identity = None if config is None else workdir_lib.identity_of(config, hash_files=False)
    if identity is not None and not workdir_lib.same_experiment(recorded, identity):
      raise workdir_lib.WorkdirMismatchError(
          f"{name} does not describe the experiment of {workdir} (its "
          f"{workdir_lib.EXPERIMENT_FILE}): "
          + workdir_lib.describe_differences(recorded, identity)
          + ("; drop --config, or pass the one the run used." if name == "--config" else ".")
      )


def write_report(workdir: str, config: dict | None = None, projection: str = "pca") -> str:
  """Regenerates workdir/plots/*.png and workdir/report.md; returns report.md's path.

  The workdir's config.json (what the run used) describes the run; `config` (a plain dict)
  stands in only when it is missing. `projection`: 'pca', or 'umap' when umap-learn is
  installed.
  """
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"workdir {workdir} does not exist; pass the --workdir of a run.")
  if projection not in plots.PROJECTIONS:
    raise ValueError(f"projection {projection!r} is not one of {plots.PROJECTIONS}.")
  if projection == "umap" and not plots.umap_available():
    raise ImportError(
        "projection 'umap' needs umap-learn (pip install umap-learn); or use "
        "the default projection 'pca'."
    )
  stored = _read_json(os.path.join(workdir, "config.json"))
  _check_experiment(workdir, stored, config)
  if stored is not None and config is not None and json.loads(json.dumps(config)) != stored:
    print(
        "Note: the report describes the workdir's config.json (what the run used), not "
        "the --config given."
    )
  config = stored or config
  results = _read_json(os.path.join(workdir, "results.json"))
  log_path = os.path.join(workdir, "log.jsonl")
  records = writers.read_log(log_path) if os.path.exists(log_path) else []
  found_snapshots = snapshots.load_snapshots(os.path.join(workdir, "snapshots"))
  predictions = predictions_lib.load_predictions(os.path.join(workdir, "predictions.npz"))
  trigger_examples = triggers.load_examples(workdir)
  plots_dir = os.path.join(workdir, PLOTS)
  os.makedirs(plots_dir, exist_ok=True)
  plot_path = lambda name: os.path.join(plots_dir, name)

  variant = (_lookup(config, "variant") if config else None) or "?"
  title = (
      " / ".join(str(_lookup(config, f) or "?") for f in ("dataset.name", "attack.name"))
      if config
      else "unknown run"
  )
  rate = _lookup(config, "attack.rate") if config else None
  has = lambda kind, phase=None: any(
      r["kind"] == kind and (phase is None or r["phase"] == phase) for r in records
  )
  no_log = "no log.jsonl" if not records else None

  lines = [
      f"# VIBE report: {title}, variant {variant}",
      "",
      f"Workdir `{os.path.abspath(workdir)}`, report written "
      f"{datetime.datetime.now().isoformat(timespec='seconds')}.",
      "",
      _status(results, records, config),
      "",
      "## Results",
      "",
      *_results_section(results, records, variant),
      "",
      *_defense_section(workdir, plot_path("suspicious.png")),
      "## Configuration",
      "",
      *_config_section(config),
      "",
      "## Trigger",
      "",
      *_trigger_section(trigger_examples),
      "",
      "## E-step diagnostics",
      "",
      *_estep_section(records),
      "",
      "## Plots",
      "",
  ]
  lines += _plot_or_note(
      "Poisoned images",
      "Poisoned training images and triggered test images next to their clean originals, "
      "and the difference (largest over the channels, scaled to its own maximum).",
      (lambda p: plots.plot_trigger_examples(trigger_examples, p))
      if trigger_examples is not None
      else None,
      plot_path("triggers.png"),
      "no trigger_examples.npz",
      workdir,
  )
  lines += _plot_or_note(
      "Training loss",
      "Mean loss over each logging interval; the VIBE loss steps at each E-step (dotted), "
      "when the pseudo-labels it fits change.",
      (lambda p: plots.plot_losses(records, p)) if has("train") else None,
      plot_path("loss.png"),
      no_log or "no training iteration logged",
      workdir,
  )
  lines += _plot_or_note(
      "E-step diagnostics",
      "How the pseudo-labels relate to the true and the given labels at each E-step.",
      (lambda p: plots.plot_estep(records, p, None if rate is None else 1.0 - rate))
      if has("estep", "vibe")
      else None,
      plot_path("estep.png"),
      no_log or "no E-step logged",
      workdir,
  )
  lines += _plot_or_note(
      "Test metrics during training",
      "VIBE's ACC / ASR / RA at each evaluation (solid), the last at the end of training; "
      "the undefended baseline's final values dashed.",
      (lambda p: plots.plot_eval(records, p)) if has("eval", "vibe") else None,
      plot_path("eval.png"),
      no_log or "no evaluation logged",
      workdir,
  )
  lines += _plot_or_note(
      f"Training features ({projection.upper()})",
      "A fixed subset of the training features, coloured by pseudo-label; poisoned samples "
      "as crosses (red edge: pseudo-label still differs from the true label); stars: mu_z, "
      "diamonds: mu_y. Left the first E-step, right the last.",
      (lambda p: plots.plot_projection(found_snapshots, p, projection))
      if found_snapshots
      else None,
      plot_path("features.png"),
      "no snapshots/estep_*.npz (saved at the first and last "
      "E-step of runs made after reports were added)",
      workdir,
  )
  lines += _plot_or_note(
      "Confusion on the poisoned test set",
      "Rows: true label, columns: prediction, on the triggered test images; the red cells "
      "are the attacker's labels. A backdoored model fills them; a defended one the "
      "diagonal. (An all-to-one attack leaves the target class's row empty: its images are "
      "not triggered.)",
      (lambda p: plots.plot_confusion(predictions, p)) if predictions is not None else None,
      plot_path("confusion.png"),
      "no predictions.npz (written at the end of a run)",
      workdir,
  )
  path = os.path.join(workdir, "report.md")
  files.write_text_atomically(path, "\n".join(lines).rstrip() + "\n")
  return path
