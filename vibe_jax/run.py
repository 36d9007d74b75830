"""The mode entry points main.py calls: train (the baseline and VIBE), defend (train, then
relabel the training set), eval, extract.

Each is `mode(config, workdir)`, in the shape of flax's `train_and_evaluate`: assembly
(vibe_jax.experiment), preparation (vibe_jax.prepare), the EM loop (vibe_jax.em.loop),
then the results and the report.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

import jax
import ml_collections

from vibe_jax import experiment as experiment_lib
from vibe_jax import features as features_lib
from vibe_jax.em import loop
from vibe_jax import files, metrics, relabel
from vibe_jax import workdir as workdir_lib
from vibe_jax.checkpoint import saved_steps
from vibe_jax.prepare import Prepared, prepare, prepare_victim
from vibe_jax.report import predictions as predictions_lib
from vibe_jax.report import report as report_lib
from vibe_jax.report import snapshots, writers
from vibe_jax.report import triggers as triggers_lib
from vibe_jax.models.vibe import VibeModel
from vibe_jax.variants import get_variant

__all__ = [
    "Defense",
    "defend",
    "evaluate_checkpoint",
    "extract_features",
    "format_results_table",
    "train_and_evaluate",
]


def _results_header(config: ml_collections.ConfigDict) -> dict:
  return {
      "config": {
          "dataset": config.dataset.name,
          "attack": config.attack.name,
          "variant": config.variant,
      }
  }


def _snapshots(
    config: ml_collections.ConfigDict, prepared: Prepared, phase: loop.Phase, workdir: str
) -> snapshots.EstepSnapshots | None:
  """The report's E-step snapshots of a VIBE phase (none when the report is off)."""
  if phase.estep is None or not config.report.enabled:
    return None
  return snapshots.EstepSnapshots(
      os.path.join(workdir, "snapshots"),
      prepared.data,
      phase.steps,
      phase.estep.period,
      seed=config.seed,
      batch_size=config.features.batch_size,
  )


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, *, restart: bool = False
) -> dict:
  """Poisons the data, trains the undefended models (deep victim, baseline head) and VIBE,
  writes results.json.

  Resumes each phase from its checkpoints in workdir/checkpoints/<phase> when the workdir
  holds this experiment (vibe_jax.workdir); a workdir of another experiment is refused
  unless `restart`, which moves its contents aside and starts over.
  """
  results, _, _ = _train(config, workdir, restart)
  if jax.process_index() == 0 and config.report.enabled:
    _write_report(workdir)
  return results


@dataclasses.dataclass(frozen=True)
class Defense:
  """What --mode defend returns: the relabelled training set, defense.json's summary, the
  defended model and what it was trained on."""

  relabelling: relabel.Relabelling
  summary: dict
  model: VibeModel
  prepared: Prepared


def defend(config: ml_collections.ConfigDict, workdir: str, *, restart: bool = False) -> Defense:
  """--mode defend: trains as --mode train (the undefended baseline, then VIBE; resumable),
  then relabels every training sample with the defended model (vibe_jax.relabel) and
  writes relabel.csv, suspicious.csv, defense.json and the report's suspicious-samples
  section. On a benchmark (a poison mask known) the mask scores the detection, and only
  that."""
  results, prepared, models = _train(config, workdir, restart)
  relabelling = relabel.relabel(
      models["vibe"], prepared.training, prepared.keep, loop.EStepSettings.from_config(config)
  )
  mask = prepared.training.poison_mask  # all False for own data (attack 'none')
  summary = relabel.defense_summary(relabelling, results, mask if mask.any() else None)
  if jax.process_index() == 0:
    images = prepared.training.images if config.report.enabled else None
    relabel.write_outputs(workdir, relabelling, summary, images)
    print(relabel.format_summary(summary))
    if config.report.enabled:
      _write_report(workdir)
  return Defense(relabelling, summary, models["vibe"], prepared)


def _train(
    config: ml_collections.ConfigDict, workdir: str, restart: bool
) -> tuple[dict, Prepared, dict[str, VibeModel]]:
  """train_and_evaluate without the report: (results, what was trained on, the models)."""
  experiment_lib.validate_config(config)
  mesh = experiment_lib.setup_devices(config)
  experiment_lib.check_batch_sizes(config, mesh)
  started = time.time()
  primary = jax.process_index() == 0
  identity = workdir_lib.open_workdir(config, workdir, restart=restart)
  prepared = prepare(config, workdir, mesh)
  workdir_lib.record_experiment(config, workdir, identity)
  log = writers.MetricWriter(workdir, tensorboard=config.report.tensorboard)
  results = _results_header(config)
  if prepared.filter_report is not None:
    results["leiden_filter"] = prepared.filter_report
  trigger_visibility = triggers_lib.visibility(triggers_lib.load_examples(workdir))
  if trigger_visibility is not None:
    results["trigger_visibility"] = trigger_visibility
  predictions, models = {}, {}
  timing = {"prepare": round(time.time() - started, 1)}
  for phase in loop.phases(config, prepared.variant.train_mu_y):
    phase_started, estep_seconds = time.time(), []
    trains_on = prepare_victim(config, workdir, mesh) if phase.name == "victim" else prepared
    model = loop.fit(
        trains_on.new_model(phase.kappa),
        trains_on.data,
        phase,
        mesh=mesh,
        checkpoint_dir=os.path.join(workdir, "checkpoints", phase.name),
        evaluate=trains_on.eval_sets.evaluate,
        log=_collecting_estep_seconds(log.writer(phase.name), estep_seconds),
        on_estep=_snapshots(config, prepared, phase, workdir),
        fingerprint=identity.fingerprint,
    )
    models[phase.name] = model
    predictions[phase.name] = trains_on.eval_sets.predict(model)
    results[phase.name] = trains_on.eval_sets.evaluate(model, predictions[phase.name])
    log.write(phase.name, {"step": phase.steps, "kind": "eval", **results[phase.name]})
    timing[phase.name] = {
        "seconds": round(time.time() - phase_started, 1),
        "estep_seconds": round(sum(estep_seconds), 3),
    }
  log.close()
  if "victim" in results and "asr" in results["vibe"]:  # an attack to rate the defense on
    results["vibe"]["der"] = metrics.defense_effectiveness_rate(results["victim"], results["vibe"])
  results["seconds"] = round(time.time() - started, 1)
  results["timing"] = timing
  if primary:
    if config.report.enabled:
      eval_sets = prepared.eval_sets
      predictions_lib.save_predictions(
          os.path.join(workdir, "predictions.npz"),
          predictions,
          clean_labels=eval_sets.clean_labels,
          poisoned_true_labels=eval_sets.poisoned_true_labels,
          poisoned_attacker_labels=eval_sets.attacker_labels,
          num_classes=prepared.num_classes,
      )
    files.write_json_atomically(os.path.join(workdir, "results.json"), results)
    print(format_results_table(results))
    print(metrics.format_timing(results))
  return results, prepared, models


def _collecting_estep_seconds(
    write: Callable[[dict], None], estep_seconds: list[float]
) -> Callable[[dict], None]:
  """`write`, also appending each E-step record's wall seconds to `estep_seconds`: the
  E-step's share of a phase, without reading the log back."""

  def log(record: dict) -> None:
    if record.get("kind") == "estep":
      estep_seconds.append(record["seconds"])
    write(record)

  return log


def _write_report(workdir: str) -> None:
  """report.md and the plots; a failure here is reported, not raised, since the results
  are already saved and `--mode report` can regenerate them."""
  try:
    path = report_lib.write_report(workdir)
    print(f"Report: {path}")
  except Exception as error:  # pylint: disable=broad-except
    print(
        f"Writing the report failed ({type(error).__name__}: {error}); results.json is "
        f"saved. Retry with: python main.py --mode report --workdir {workdir}"
    )


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """--mode eval: the saved models of `workdir` on the clean and the poisoned test sets.

  The workdir must hold this experiment (vibe_jax.workdir) and a checkpoint of each phase;
  both are checked before any data is loaded.
  """
  experiment_lib.validate_config(config)
  mesh = experiment_lib.setup_devices(config)
  experiment_lib.check_batch_sizes(config, mesh)
  identity = workdir_lib.check_workdir(config, workdir, required=True)
  phases = loop.phases(config, get_variant(config.variant).train_mu_y)
  for phase in phases:
    directory = os.path.join(workdir, "checkpoints", phase.name)
    if not saved_steps(directory):
      raise FileNotFoundError(
          f"No training checkpoint in {directory}; train first (--mode train) with the same "
          "--workdir and --config."
      )
  prepared = prepare(config, workdir, mesh)
  results = _results_header(config)
  for phase in phases:
    trains_on = prepare_victim(config, workdir, mesh) if phase.name == "victim" else prepared
    model, step = loop.restore_model(
        trains_on.new_model(phase.kappa),
        trains_on.data,
        os.path.join(workdir, "checkpoints", phase.name),
        phase,
        fingerprint=identity.fingerprint,
    )
    results[phase.name] = {**trains_on.eval_sets.evaluate(model), "step": step}
  if jax.process_index() == 0:
    print(format_results_table(results))  # first: the table survives a failed write
    files.write_json_atomically(os.path.join(workdir, "eval.json"), results)
  return results


def extract_features(config: ml_collections.ConfigDict, workdir: str) -> str:
  """--mode extract: writes the features file (features.FEATURE_FILE_ARRAYS) of the
  configured data set, attack and extractor to workdir/features_file.npz."""
  experiment_lib.validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  mesh = experiment_lib.setup_devices(config)
  experiment = experiment_lib.build_experiment(config, workdir=workdir)
  arrays = features_lib.experiment_feature_arrays(config, experiment, workdir, mesh)
  path = os.path.join(workdir, "features_file.npz")
  if jax.process_index() == 0:
    features_lib.write_feature_file(path, arrays)
    print(f"Wrote {path}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
  return path


def format_results_table(results: dict) -> str:
  """The deep victim, the baseline head and VIBE: ACC / ASR / RA in percent."""
  rows = [("model", "ACC", "ASR", "RA")]
  for name in metrics.RESULT_ROWS:
    if name in results:
      rows.append(
          (
              metrics.result_label(name, results["config"]["variant"]),
              *(
                  f"{100 * results[name][m]:.2f}" if m in results[name] else "-"
                  for m in ("acc", "asr", "ra")
              ),
          )
      )
  widths = [max(len(row[i]) for row in rows) for i in range(4)]
  lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
  return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])
