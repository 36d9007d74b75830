"""Several dirty-label attacks at once, on disjoint samples, each with its own target.

Each sub-attack poisons rate x N samples (attack.rate is per attack) drawn from its
non-target classes and from the samples no earlier sub-attack took. The poisoned test set
is the concatenation of each sub-attack's poisoned test set, with
PoisonedTestSet.attack_index saying which attack triggered each image, so ASR can be
reported per attack (metrics.per_attack_metrics, results key 'asr/<name>').

Sub-attacks are the ones whose poisoning is the default dirty-label scheme (a trigger
plus a flipped label: badnets, blend, wanet, ftrojan); their own knobs go in
attack.params.sub_params.<name> (a dict), e.g. {'blend': {'alpha': 0.2}}.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vibe_jax.data.attacks.base import (
    ATTACKS,
    Attack,
    PoisonedTestSet,
    PoisonedTrainSet,
    check_images,
    make_attack,
)


def _split(text: str) -> list[str]:
  return [item.strip() for item in text.split(",") if item.strip()]


def unique_names(names: list[str]) -> tuple[str, ...]:
  """Attack names made unique for reporting: a repeated name gets '_<position>'."""
  return tuple(name if names.count(name) == 1 else f"{name}_{i}" for i, name in enumerate(names))


@ATTACKS.register("multi")
class Multi(Attack):
  """`attacks` (comma-separated names) with `targets` (comma-separated, one per attack)."""

  def __init__(
      self,
      *,
      attacks: str = "badnets,blend,wanet",
      targets: str = "0,1,2",
      sub_params: dict[str, Any] | None = None,
      **common,
  ):
    super().__init__(**common)
    names, target_texts = _split(attacks), _split(targets)
    if len(names) < 2:
      raise ValueError(
          f"attack.params.attacks={attacks!r}: name at least two attacks, "
          "comma-separated, e.g. 'badnets,blend'."
      )
    if len(target_texts) != len(names):
      raise ValueError(
          f"attack.params.targets={targets!r} must give one target per attack "
          f"in attack.params.attacks={attacks!r}."
      )
    if self.label_mode != "all_to_one":
      raise ValueError(
          "attack.label_mode must be 'all_to_one' for multi; each sub-attack has "
          "its own target (attack.params.targets)."
      )
    sub_params = dict(sub_params or {})
    unknown = sorted(set(sub_params) - set(names))
    if unknown:
      raise ValueError(
          f"attack.params.sub_params has entries {unknown} for attacks not in "
          f"attack.params.attacks={attacks!r}."
      )
    self.names = unique_names(names)
    self.targets = [int(t) for t in target_texts]
    self.attacks: list[Attack] = []
    for position, (name, target) in enumerate(zip(names, self.targets)):
      cls = ATTACKS.get(name, field="attack.params.attacks")
      if (
          name == "multi"
          or cls.poison_train is not Attack.poison_train
          or cls.poison_test is not Attack.poison_test
      ):
        raise ValueError(
            f"attack.params.attacks: {name!r} has its own poisoning scheme and "
            "cannot be combined by 'multi'; use dirty-label trigger attacks "
            "such as badnets, blend, wanet, ftrojan."
        )
      self.attacks.append(
          make_attack(
              name,
              num_classes=self.num_classes,
              image_shape=self.image_shape,
              target=target,
              rate=self.rate,
              seed=self.seed + 1000 * (position + 1),
              params=sub_params.get(name),
          )
      )

  def apply_trigger(self, images: np.ndarray) -> np.ndarray:
    raise NotImplementedError(
        "multi has one trigger per sub-attack; use " "multi.attacks[i].apply_trigger."
    )

  def poison_train(self, images: np.ndarray, labels: np.ndarray) -> PoisonedTrainSet:
    check_images(images)
    rng = np.random.default_rng(self.seed)
    count = int(round(self.rate * len(labels)))
    taken = np.zeros(len(labels), bool)
    poisoned, given = images.copy(), labels.astype(np.int32).copy()
    for name, attack in zip(self.names, self.attacks):
      candidates = np.flatnonzero(attack.candidate_mask(labels) & ~taken)
      if count > len(candidates):
        raise ValueError(
            f"attack.rate={self.rate} asks for {count} samples per attack but "
            f"only {len(candidates)} remain for {name!r}; lower attack.rate."
        )
      indices = np.sort(rng.choice(candidates, size=count, replace=False))
      poisoned[indices] = attack.apply_trigger(images[indices])
      given[indices] = attack.attacker_labels(labels[indices])
      taken[indices] = True
    return PoisonedTrainSet(poisoned, given, labels.astype(np.int32), taken)

  def poison_test(self, images: np.ndarray, labels: np.ndarray) -> PoisonedTestSet:
    parts = [attack.poison_test(images, labels) for attack in self.attacks]
    return PoisonedTestSet(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.true_labels for p in parts]),
        np.concatenate([p.attacker_labels for p in parts]),
        attack_index=np.concatenate(
            [np.full(len(p.true_labels), k, np.int32) for k, p in enumerate(parts)]
        ),
        attack_names=self.names,
        source_index=np.concatenate([p.source_index for p in parts]),
    )
