"""ACC / ASR / RA (VIBE_SPEC.md section 5), the E-step pseudo-label diagnostics, and
BackdoorBench's summary ratings of a defense against the undefended victim (DER, RIR)."""

from __future__ import annotations

import numpy as np

RESULT_ROWS = ("victim", "baseline", "vibe")  # results.json's model keys, in table order


def result_label(name: str, variant: str) -> str:
  """A model's name in the results tables: 'victim', 'baseline' or 'VIBE (<variant>)'."""
  return f"VIBE ({variant})" if name == "vibe" else name


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
  """Fraction of predictions equal to labels (0 for an empty set)."""
  predictions, labels = np.asarray(predictions), np.asarray(labels)
  return float(np.mean(predictions == labels)) if len(labels) else 0.0


def defense_metrics(
    clean_predictions: np.ndarray,
    clean_labels: np.ndarray,
    poisoned_predictions: np.ndarray,
    poisoned_true_labels: np.ndarray,
    attacker_labels: np.ndarray,
) -> dict[str, float]:
  """ACC on the clean test set; ASR (attacker's label) and RA (true label) on the poisoned one;
  and `asr_floor`, the ASR the same model shows without any trigger: how often it predicts
  the attacker's label for clean test images of each poisoned image's true class (the clean
  confusion matrix, weighted like the triggered test set). ASR cannot fall below it by
  removing the backdoor; on Fashion-MNIST with target T-shirt, shirts make it ~2-3 %."""
  return {
      "acc": accuracy(clean_predictions, clean_labels),
      "asr": accuracy(poisoned_predictions, attacker_labels),
      "ra": accuracy(poisoned_predictions, poisoned_true_labels),
      "asr_floor": _asr_floor(
          clean_predictions, clean_labels, poisoned_true_labels, attacker_labels
      ),
  }


def _asr_floor(
    clean_predictions: np.ndarray,
    clean_labels: np.ndarray,
    poisoned_true_labels: np.ndarray,
    attacker_labels: np.ndarray,
) -> float:
  """Mean over the triggered test images of P(prediction = attacker's label | a clean image
  of its true class); a class without clean test images counts 0."""
  clean_predictions, clean_labels = np.asarray(clean_predictions), np.asarray(clean_labels)
  if not len(poisoned_true_labels):
    return 0.0
  pairs, counts = np.unique(
      np.stack([poisoned_true_labels, attacker_labels], axis=1), axis=0, return_counts=True
  )
  total = 0.0
  for (true, wanted), count in zip(pairs, counts):
    members = clean_labels == true
    if members.any():
      total += count * np.mean(clean_predictions[members] == wanted)
  return float(total / len(poisoned_true_labels))


def per_attack_metrics(
    poisoned_predictions: np.ndarray,
    poisoned_true_labels: np.ndarray,
    attacker_labels: np.ndarray,
    attack_index: np.ndarray,
    attack_names: tuple[str, ...],
) -> dict[str, float]:
  """ASR and RA of each attack of a multi-attack test set: 'asr/<name>', 'ra/<name>'."""
  predictions, attack_index = np.asarray(poisoned_predictions), np.asarray(attack_index)
  true_labels, attacker_labels = np.asarray(poisoned_true_labels), np.asarray(attacker_labels)
  if attack_index.shape != predictions.shape:
    raise ValueError(
        f"attack_index has shape {attack_index.shape} but there are "
        f"{predictions.shape} poisoned predictions."
    )
  out = {}
  for k, name in enumerate(attack_names):
    members = attack_index == k
    out[f"asr/{name}"] = accuracy(predictions[members], attacker_labels[members])
    out[f"ra/{name}"] = accuracy(predictions[members], true_labels[members])
  return out


def pseudo_label_diagnostics(
    pseudo_labels: np.ndarray,
    given_labels: np.ndarray,
    true_labels: np.ndarray,
    poison_mask: np.ndarray,
) -> dict[str, float]:
  """How the E-step's labels relate to the given labels, the true labels and the poison
  (poison_restored only when some sample is marked poisoned: a data owner's set has no
  mask, and 0 restored of none would read as a failure)."""
  pseudo_labels, true_labels = np.asarray(pseudo_labels), np.asarray(true_labels)
  poison_mask = np.asarray(poison_mask, bool)
  diagnostics = {
      "agree_given": accuracy(pseudo_labels, given_labels),
      "agree_true": accuracy(pseudo_labels, true_labels),
  }
  if poison_mask.any():
    diagnostics["poison_restored"] = accuracy(pseudo_labels[poison_mask], true_labels[poison_mask])
  return diagnostics


def defense_effectiveness_rate(victim: dict, defended: dict) -> float:
  """BackdoorBench's DER (SCLBD/BackdoorBench utils/metric.py,
  defense_effectiveness_rate_simplied, as analysis/visual_metric.py uses it):
  [max(0, ASR_victim - ASR_defense) - max(0, ACC_victim - ACC_defense) + 1] / 2."""
  return (
      max(0.0, victim["asr"] - defended["asr"]) - max(0.0, victim["acc"] - defended["acc"]) + 1
  ) / 2


def robust_improvement_rate(victim: dict, defended: dict) -> float:
  """BackdoorBench's RIR (the same file, robust_improvement_rate_simplied):
  [max(0, RA_defense - RA_victim) - max(0, ACC_victim - ACC_defense) + 1] / 2."""
  return (
      max(0.0, defended["ra"] - victim["ra"]) - max(0.0, victim["acc"] - defended["acc"]) + 1
  ) / 2


def format_timing(results: dict) -> str:
  """One line of wall seconds per phase, with the E-step's share where a phase has one."""
  timing = results.get("timing", {})
  parts = [f"prepare {timing['prepare']:.0f} s"] if "prepare" in timing else []
  for name, phase in timing.items():
    if name == "prepare":
      continue
    part = f"{name} {phase['seconds']:.0f} s"
    if phase["estep_seconds"]:
      share = phase["estep_seconds"] / max(phase["seconds"], 1e-9)
      part += f" (E-step {phase['estep_seconds']:.1f} s, {100 * share:.0f} %)"
    parts.append(part)
  return f"Wall time {results.get('seconds', 0):.0f} s: " + ", ".join(parts)
