"""Runs a small digits experiment in its own process (device count, multi-host, kill tests).

  python tests/helpers/run_digits.py WORKDIR [--config.field=value ...]

Prints one JSON line with the results, the E-step diagnostics and losses of log.jsonl.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from configs import digits_badnets  # noqa: E402
from vibe_jax import run  # noqa: E402


def main(workdir, overrides):
  config = digits_badnets.get_config("f")
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
