"""A workdir belongs to one experiment.

Rerunning a command resumes from the workdir's checkpoints, so a rerun with another config
would silently score (or keep training) another experiment's models. The workdir therefore
records the experiment's identity in workdir/experiment.json: the resolved config, flattened
to dotted fields, minus the fields a rerun may change without changing what is computed
(VOLATILE_FIELDS: logging and evaluation cadence, checkpoint cadence, report switches,
devices, where the data set lives, the extraction batch size, pretraining settings). A run
whose identity differs is refused with one line naming the differing fields, unless the
caller asks to start over (`restart`, main.py's --restart), which moves the old contents
aside into workdir/replaced-<time>/ (nothing is deleted).

experiment.json and config.json are written together, only once the config has been
validated and the data prepared; checkpoints carry the identity's fingerprint too
(checkpoint.TrainCheckpoints), so a checkpoint copied from elsewhere is refused as well.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections

from vibe_jax import files, parallel, variants

__all__ = [
    "EXPERIMENT_FILE",
    "VOLATILE_FIELDS",
    "Identity",
    "WorkdirMismatchError",
    "check_workdir",
    "describe_differences",
    "identity_of",
    "open_workdir",
    "record_experiment",
    "recorded_identity",
    "same_experiment",
]

EXPERIMENT_FILE = "experiment.json"
CONFIG_FILE = "config.json"
_FORMAT = "vibe_jax.experiment"
_VERSION = 1
_REPLACED_PREFIX = "replaced-"
_CONTENT = "sha256:"  # an identity value that is a file's content digest, not its path

# Dotted config fields (or whole sections) that a rerun may change: they change what is
# logged, where things are read from or how fast, not the numbers a run computes.
VOLATILE_FIELDS = (
    "train.log_every",
    "train.eval_every",
    "baseline.log_every",
    "baseline.eval_every",
    "checkpoint.every",
    "report",
    "parallel",
    "features.batch_size",
    "dataset.data_dir",
    "ssl",  # --mode pretrain's section; a VIBE run does not read it
)


class WorkdirMismatchError(ValueError):
  """The workdir holds another experiment than the config describes."""


class Identity(dict):
  """Dotted field -> JSON value: what makes an experiment this one (see the module doc)."""

  @property
  def fingerprint(self) -> str:
    text = json.dumps(self, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping) and value:
      flat.update(_flatten(value, f"{name}."))
    else:
      flat[name] = value
  return flat


def _volatile(field: str) -> bool:
  return any(field == v or field.startswith(f"{v}.") for v in VOLATILE_FIELDS)


def _content_fields(config: Mapping[str, Any]) -> list[str]:
  """The path fields whose files the run computes from (the backbone it uses, pre-poisoned
  files, a trigger image), which the identity holds by content: a backbone re-pretrained at the same path is
  another experiment, the same one moved elsewhere is not."""
  fields = []
  uses_backbone = config["features"]["extractor"] == "backbone" and not config["features"]["file"]
  if variants.get_variant(config["variant"]).finetune_backbone or uses_backbone:
    fields.append("backbone.checkpoint")
  if config["attack"]["name"] == "prepoisoned":
    fields += ["attack.params.train_file", "attack.params.test_file"]
  if config["attack"]["params"].get("trigger_file"):
    fields.append("attack.params.trigger_file")
  return fields


def identity_of(
    config: ml_collections.ConfigDict | Mapping[str, Any], *, hash_files: bool = True
) -> Identity:
  """The identity of a config (a ConfigDict, or config.json's dict). With `hash_files` the
  files of _content_fields enter as 'sha256:<digest>' of their content instead of paths."""
  if isinstance(config, ml_collections.ConfigDict):
    config = json.loads(config.to_json_best_effort())
  else:
    config = json.loads(json.dumps(config))  # tuples -> lists, as config.json holds them
  identity = {k: v for k, v in _flatten(config).items() if not _volatile(k)}
  if hash_files:
    for field in _content_fields(config):
      if identity.get(field):
        identity[field] = f"{_CONTENT}{files.content_digest(identity[field])}"
  return Identity(sorted(identity.items()))


def same_experiment(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
  """Whether two identities agree, a field held by content on one side only (a config whose
  files were not hashed, as --mode report's) left out."""
  return not _differing(recorded, current)


def _differing(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
  by_content = lambda value: isinstance(value, str) and value.startswith(_CONTENT)
  return [
      name
      for name in sorted(set(stored) | set(current))
      if stored.get(name, _MISSING) != current.get(name, _MISSING)
      and by_content(stored.get(name)) == by_content(current.get(name))
  ]


def describe_differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> str:
  """'attack.name 'badnets' -> 'blend', variant 'a' -> 'f'' (at most 6, then a count)."""
  changed = _differing(stored, current)
  shown = [
      f"{n} {_show(stored.get(n, _MISSING))} -> {_show(current.get(n, _MISSING))}"
      for n in changed[:6]
  ]
  more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
  return ", ".join(shown) + more


_MISSING = object()


def _show(value: Any) -> str:
  return "(absent)" if value is _MISSING else repr(value)


def _read_json(path: str, what: str) -> dict | None:
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      payload = json.load(f)
  except (OSError, ValueError) as error:
    raise WorkdirMismatchError(
        f"{path} cannot be read ({error}); it is the {what} of this workdir: use another "
        "--workdir, or --restart to move the workdir's contents aside and start over."
    ) from error
  if not isinstance(payload, dict):
    raise WorkdirMismatchError(f"{path} is not the {what} of a vibe_jax run (not a JSON object).")
  return payload


def recorded_identity(workdir: str) -> Identity | None:
  """The identity workdir/experiment.json records (None when there is none)."""
  path = os.path.join(workdir, EXPERIMENT_FILE)
  stored = _read_json(path, "experiment record")
  if stored is None:
    return None
  if stored.get("format") != _FORMAT or not isinstance(stored.get("identity"), dict):
    raise WorkdirMismatchError(
        f"{path} is not a vibe_jax experiment record (format {stored.get('format')!r}); use "
        "another --workdir, or --restart to move the workdir's contents aside."
    )
  return Identity(stored["identity"])


def _stored_identity(workdir: str) -> tuple[Identity | None, str]:
  """The workdir's recorded identity and the file it came from: experiment.json, or for a
  workdir of an earlier vibe_jax (none) that trained, config.json; (None, '') for a new one."""
  recorded = recorded_identity(workdir)
  if recorded is not None:
    return recorded, os.path.join(workdir, EXPERIMENT_FILE)
  path = os.path.join(workdir, CONFIG_FILE)
  trained = any(
      os.path.exists(os.path.join(workdir, name)) for name in ("checkpoints", "results.json")
  )
  legacy = _read_json(path, "resolved config") if trained else None
  if legacy is not None:
    return identity_of(legacy, hash_files=False), path
  return None, ""


def _mismatch(workdir: str, source: str, stored: Identity, current: Identity) -> str:
  return (
      f"workdir {workdir} holds another experiment ({os.path.basename(source)}): "
      f"{describe_differences(stored, current)}; use another --workdir, or pass --restart "
      "to move its contents aside and start over."
  )


def check_workdir(
    config: ml_collections.ConfigDict | Mapping[str, Any], workdir: str, *, required: bool
) -> Identity:
  """The config's identity, after checking that the workdir holds this experiment (a new
  workdir passes unless `required`, as for --mode eval, which needs a trained one)."""
  current = identity_of(config)
  stored, source = _stored_identity(workdir)
  if stored is None:
    if required:
      raise FileNotFoundError(
          f"workdir {workdir} holds no trained experiment (no {EXPERIMENT_FILE}); train "
          "first (--mode train) with the same --workdir and --config."
      )
    return current
  if not same_experiment(stored, current):
    raise WorkdirMismatchError(_mismatch(workdir, source, stored, current))
  return current


def open_workdir(
    config: ml_collections.ConfigDict, workdir: str, *, restart: bool = False
) -> Identity:
  """Creates `workdir` or checks that it holds this experiment; with `restart`, first
  moves whatever it holds into workdir/replaced-<time>/ (process 0; the others wait).
  Returns the identity for `record_experiment`."""
  if restart:
    if jax.process_index() == 0:
      moved = files.move_contents_aside(workdir, _REPLACED_PREFIX)
      if moved:
        print(f"--restart: moved the previous contents of {workdir} to {moved}")
    parallel.sync("vibe_jax workdir restart")
  elif os.path.isdir(workdir):
    return check_workdir(config, workdir, required=False)
  os.makedirs(workdir, exist_ok=True)
  return identity_of(config)


def record_experiment(config: ml_collections.ConfigDict, workdir: str, identity: Identity) -> None:
  """Writes config.json (the resolved config, volatile fields included) and
  experiment.json (the identity and its fingerprint), each atomically, from process 0."""
  if jax.process_index() != 0:
    return
  files.write_text_atomically(
      os.path.join(workdir, CONFIG_FILE), config.to_json_best_effort(indent=2)
  )
  files.write_json_atomically(
      os.path.join(workdir, EXPERIMENT_FILE),
      {
          "format": _FORMAT,
          "version": _VERSION,
          "fingerprint": identity.fingerprint,
          "volatile_fields": list(VOLATILE_FIELDS),
          "identity": identity,
      },
  )
