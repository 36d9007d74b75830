"""Small digits runs for the reliability tests: configs, and runs in a process of their own
(another device count, a clean exit code, a kill).

  python tests/reliability/digits.py WORKDIR '{"variant": "a,runlocal", "train.steps": 40}'

runs `run.train_and_evaluate` and prints one line `RESULT <results.json as JSON>`.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


def config(arg: str = "a,runlocal", attack: str = "badnets", **fields):
  """configs/digits_<attack>.py's config for `arg` (runlocal by default) with the report off
  and `fields` (dotted names, as in {"train.steps": 20}) set."""
  config = importlib.import_module(f"configs.digits_{attack}").get_config(arg)
  config.report.enabled = False
  config.report.tensorboard = False
  for field, value in fields.items():
    *path, last = field.split(".")
    node = config
    for part in path:
      node = node[part]
    node[last] = value
  return config


def run_in_process(workdir, fields: dict, *, devices: int = 1, timeout: float = 600):
  """This module as a script in a fresh process on `devices` CPU devices; the finished
  process (stdout and stderr captured as text)."""
  from helpers.processes import cpu_environment  # tests/ is on sys.path under pytest only

  return subprocess.run(
      [sys.executable, os.path.abspath(__file__), str(workdir), json.dumps(fields)],
      cwd=ROOT,
      env=cpu_environment(devices),
      capture_output=True,
      text=True,
      timeout=timeout,
  )


def result_of(done: subprocess.CompletedProcess) -> dict:
  assert done.returncode == 0, done.stderr[-4000:]
  line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line.removeprefix("RESULT "))


def main(workdir: str, fields: dict) -> None:
  from vibe_jax import run

  arg = fields.pop("variant", "a,runlocal")
  results = run.train_and_evaluate(config(arg, **fields), workdir)
  print("RESULT " + json.dumps(results), flush=True)


if __name__ == "__main__":
  main(sys.argv[1], json.loads(sys.argv[2]))
