"""Runs a small digits experiment in its own process (device count, multi-host, kill tests).

  python tests/helpers/run_digits.py WORKDIR [--variant=NAME] [--config.field=value ...]

Prints one JSON line with the results, the E-step diagnostics and losses of log.jsonl.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from configs import digits_badnets  # noqa: E402
from vibe_jax import experiment, run  # noqa: E402


def record_training_rows(path):
  """Makes every read of the digits training images append the row indices it read to
  `path` (one .npy per read), so a test can see which rows each process loaded."""
  import dataclasses

  import numpy as np

  from vibe_jax.data import datasets
  from vibe_jax.data.rows import Rows

  load = datasets.load_dataset

  def recording_load(*args, **kwargs):
    dataset = load(*args, **kwargs)
    images = dataset.train_images
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


def main(workdir, overrides):
  if os.environ.get("RECORD_TRAINING_ROWS"):
    record_training_rows(os.environ["RECORD_TRAINING_ROWS"])
  variant = "f"
  if overrides and overrides[0].startswith("--variant="):
    variant = overrides.pop(0).removeprefix("--variant=")
  config = digits_badnets.get_config(variant)
  for override in overrides:
    field, value = override.removeprefix("--config.").split("=", 1)
    *path, last = field.split(".")
    node = config
    for part in path:
      node = node[part]
    node[last] = type(node[last])(value) if not isinstance(node[last], bool) else value == "True"
  results = run.train_and_evaluate(config, workdir)
  import jax

  if jax.process_index() == 0:
    with open(os.path.join(workdir, "log.jsonl")) as f:
      records = [json.loads(line) for line in f]
    print("RESULT " + json.dumps({"results": results, "log": records}))


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2:])
