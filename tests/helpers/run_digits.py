"""Runs small digits experiments in a process of their own (multi-host jobs, kill tests).

  python tests/helpers/run_digits.py RUNS [--config.FIELD=VALUE ...]

RUNS: a JSON list of {"workdir": DIR, "variant": "f", "overrides": {"train.steps": 10, ...}},
each run on helpers.configs.tiny_config('digits_badnets', variant, overrides) and the
command line's --config.* flags (helpers.processes.run_processes adds the parallel ones). Process 0
prints one line per run: RESULT {"results": ..., "log": [the records of log.jsonl]}. With
RECORD_TRAINING_ROWS=PREFIX, run i appends the digits training rows each of its reads
loaded to PREFIX.i.npy (one array per read), so a test can see which rows a process read.
"""

import dataclasses
import json
import os
import sys

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(TESTS))
sys.path.append(TESTS)  # last: tests/ holds folders named like modules

import jax  # noqa: E402
import numpy as np  # noqa: E402

from helpers.configs import set_fields, tiny_config  # noqa: E402
from vibe_jax import experiment, run  # noqa: E402
from vibe_jax.data import datasets  # noqa: E402
from vibe_jax.data.rows import Rows  # noqa: E402

_recording = {"path": None}


def record_training_rows() -> None:
  """Makes every load of the digits set record the training rows that are then read."""
  load = datasets.load_dataset

  def recording_load(*args, **kwargs):
    dataset = load(*args, **kwargs)
    path, images = _recording["path"], dataset.train_images
    if path is None:
      return dataset
    if not isinstance(images, Rows):
      with open(path, "ab") as f:
        np.save(f, np.arange(len(images)))  # an eager load holds every row
      return dataset

    def read(indices):
      with open(path, "ab") as f:
        np.save(f, indices)
      return images.read(indices)

    recorded = Rows(read, len(images), images.shape[1:], images.dtype)
    return dataclasses.replace(dataset, train_images=recorded)

  experiment.datasets.load_dataset = recording_load


def parse_flags(flags: list[str], config) -> dict:
  """--config.FIELD=VALUE flags as {FIELD: VALUE}, each converted to the field's type."""
  overrides = {}
  for flag in flags:
    field, value = flag.removeprefix("--config.").split("=", 1)
    node = config
    for part in field.split("."):
      node = node[part]
    overrides[field] = value == "True" if isinstance(node, bool) else type(node)(value)
  return overrides


def main(runs: list[dict], flags: list[str]) -> None:
  prefix = os.environ.get("RECORD_TRAINING_ROWS")
  if prefix:
    record_training_rows()
  for i, spec in enumerate(runs):
    _recording["path"] = f"{prefix}.{i}.npy" if prefix else None
    config = tiny_config("digits_badnets", spec.get("variant", "f"), spec.get("overrides"))
    set_fields(config, parse_flags(flags, config))
    results = run.train_and_evaluate(config, spec["workdir"])
    if jax.process_index() == 0:
      with open(os.path.join(spec["workdir"], "log.jsonl")) as f:
        records = [json.loads(line) for line in f]
      print("RESULT " + json.dumps({"results": results, "log": records}), flush=True)


if __name__ == "__main__":
  main(json.loads(sys.argv[1]), sys.argv[2:])
