"""A sweep: every (config, variant) pair run in its own workdir, then one paper-style table.

  python -m vibe_jax.sweep --configs 'configs/digits_*.py' --variants a,f --workdir runs/sweep
  python -m vibe_jax.sweep --configs configs/digits_badnets.py --variants a \\
      --overrides '--config.train.steps=100 --config.baseline.steps=100' --workdir /tmp/sweep

Each run is `python main.py --config PATH:VARIANT --workdir DIR/<config>_<variant> OVERRIDES`
in a subprocess (a crash or a leak in one run cannot take the others down), with its output
in <run>/run.log. A run whose results.json exists for the same overrides (stored in
<run>/sweep_overrides.json) is skipped, so an interrupted sweep resumes where it stopped;
one run with other overrides starts over, its old contents moved to <run>/replaced-<time>/.
DIR/sweep.md and DIR/sweep.csv hold the table: one row per config (attack), ACC / ASR / RA
of the baseline and of VIBE for each variant.

The command line is parsed here (argparse) rather than in main.py because a sweep is a
driver of main.py, not a mode of it; the functions below take explicit arguments.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import glob
import json
import os
import shlex
import subprocess
import sys
import time
from typing import NoReturn

from vibe_jax import errors, files
from vibe_jax.variants import get_variant

__all__ = [
    "SweepRun",
    "baseline_notes",
    "expand_configs",
    "plan",
    "run_all",
    "sweep_table",
    "write_tables",
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(ROOT, "main.py")
METRICS = ("acc", "asr", "ra")
OVERRIDES_FILE = "sweep_overrides.json"  # the overrides a pair's workdir was run with


@dataclasses.dataclass(frozen=True)
class SweepRun:
  """One (config, variant) pair and the workdir it runs in."""

  config_path: str
  variant: str
  workdir: str

  @property
  def name(self) -> str:
    return os.path.splitext(os.path.basename(self.config_path))[0]

  @property
  def results_path(self) -> str:
    return os.path.join(self.workdir, "results.json")

  def command(self, overrides: list[str]) -> list[str]:
    return [
        sys.executable,
        MAIN,
        f"--config={self.config_path}:{self.variant}",
        f"--workdir={self.workdir}",
        *overrides,
    ]


def expand_configs(patterns: list[str]) -> list[str]:
  """Config files matching the glob patterns (sorted, without duplicates, absolute)."""
  paths = []
  for pattern in patterns:
    matches = sorted(glob.glob(os.path.expanduser(pattern)))
    if not matches:
      raise FileNotFoundError(f"--configs pattern {pattern!r} matches no file.")
    for path in matches:
      path = os.path.abspath(path)
      if (
          path.endswith(".py")
          and os.path.basename(path) not in ("__init__.py", "common.py")
          and path not in paths
      ):
        paths.append(path)
  if not paths:
    raise FileNotFoundError(f"--configs {patterns} match no experiment config (*.py).")
  return paths


def plan(config_paths: list[str], variants: list[str], workdir: str) -> list[SweepRun]:
  """Every (config, variant) pair, in workdir/<config name>_<variant>."""
  if not variants:
    raise ValueError("--variants is empty; pass e.g. a,f.")
  return [
      SweepRun(
          path,
          variant,
          os.path.join(workdir, f"{os.path.splitext(os.path.basename(path))[0]}_" f"{variant}"),
      )
      for path in config_paths
      for variant in variants
  ]


def run_all(runs: list[SweepRun], overrides: list[str], log=print) -> list[SweepRun]:
  """Runs each pair that has no results.json for these overrides; returns the runs that
  failed. A pair run before with other overrides (or of unknown ones) starts over: what its
  workdir held is moved to <workdir>/replaced-<time>/ (nothing deleted)."""
  failed = []
  for index, run in enumerate(runs, 1):
    prefix = f"[{index}/{len(runs)}] {run.name}:{run.variant}"
    stored = _stored_overrides(run)
    if stored == overrides and os.path.exists(run.results_path):
      log(f"{prefix} skipped: {run.results_path} exists")
      continue
    if stored != overrides and os.path.isdir(run.workdir) and os.listdir(run.workdir):
      moved = files.move_contents_aside(run.workdir)
      previous = "unknown overrides" if stored is None else f"overrides {shlex.join(stored)!r}"
      log(f"{prefix}: ran before with {previous}; starting over (moved to {moved})")
    os.makedirs(run.workdir, exist_ok=True)
    files.write_json_atomically(
        os.path.join(run.workdir, OVERRIDES_FILE),
        {"config": f"{run.config_path}:{run.variant}", "overrides": overrides},
    )
    log(f"{prefix} running in {run.workdir} ...")
    started = time.time()
    with open(os.path.join(run.workdir, "run.log"), "a") as output:
      done = subprocess.run(
          run.command(overrides), cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, check=False
      )
    seconds = time.time() - started
    if done.returncode != 0 or not os.path.exists(run.results_path):
      failed.append(run)
      log(
          f"{prefix} FAILED (exit {done.returncode}, {seconds:.0f} s); last lines of "
          f"{run.workdir}/run.log:\n{_tail(os.path.join(run.workdir, 'run.log'))}"
      )
      continue
    with open(run.results_path) as f:
      vibe = json.load(f)["vibe"]
    log(
        f"{prefix} done in {seconds:.0f} s: VIBE "
        + ", ".join(f"{m.upper()} {100 * vibe[m]:.1f}" for m in METRICS)
    )
  return failed


def _stored_overrides(run: SweepRun) -> list[str] | None:
  """The overrides the pair's workdir was last run with (None: not recorded, or unreadable)."""
  path = os.path.join(run.workdir, OVERRIDES_FILE)
  try:
    with open(path) as f:
      stored = json.load(f).get("overrides")
  except (OSError, ValueError, AttributeError):
    return None
  return stored if isinstance(stored, list) else None


def _tail(path: str, lines: int = 15) -> str:
  with open(path, errors="replace") as f:
    return "".join(f.readlines()[-lines:]).rstrip()


def sweep_table(runs: list[SweepRun], variants: list[str]) -> tuple[list[str], list[list]]:
  """The header and rows (one per config) of the table, raw fractions from results.json.

  The baseline does not depend on the variant for frozen features, so its columns come
  from the first variant whose run finished; a variant whose own baseline differs (e.g. a
  Leiden-filtered one) is listed by `baseline_notes`.
  """
  header = [
      "config",
      "dataset",
      "attack",
      "label_mode",
      *(f"baseline_{m}" for m in METRICS),
      *(f"{variant}_{m}" for variant in variants for m in METRICS),
  ]
  rows = []
  for name in dict.fromkeys(run.name for run in runs):
    row = {"config": name}
    for run in (r for r in runs if r.name == name):
      results = _results(run)
      if results is None:
        continue
      row.setdefault("dataset", results["config"].get("dataset", ""))
      row.setdefault("attack", results["config"].get("attack", ""))
      row.setdefault("label_mode", _label_mode(run))
      for metric in METRICS:
        row.setdefault(f"baseline_{metric}", results.get("baseline", {}).get(metric))
        row[f"{run.variant}_{metric}"] = results["vibe"][metric]
    rows.append([row.get(column) for column in header])
  return header, rows


def baseline_notes(runs: list[SweepRun]) -> list[str]:
  """Runs whose baseline differs from the one shown for their config."""
  notes, shown = [], {}
  for run in runs:
    results = _results(run)
    if results is None or "baseline" not in results:
      continue
    baseline = tuple(results["baseline"][m] for m in METRICS)
    reference = shown.setdefault(run.name, (run.variant, baseline))
    if reference[1] != baseline:
      notes.append(
          f"{run.name}: the baseline of variant {run.variant} ("
          + ", ".join(f"{m.upper()} {100 * v:.2f}" for m, v in zip(METRICS, baseline))
          + f") differs from the one shown (variant {reference[0]})."
      )
  return notes


def _results(run: SweepRun) -> dict | None:
  if not os.path.exists(run.results_path):
    return None
  with open(run.results_path) as f:
    return json.load(f)


def _label_mode(run: SweepRun) -> str:
  path = os.path.join(run.workdir, "config.json")
  if not os.path.exists(path):
    return ""
  with open(path) as f:
    return json.load(f).get("attack", {}).get("label_mode", "")


def write_tables(runs: list[SweepRun], variants: list[str], workdir: str) -> tuple[str, str]:
  """workdir/sweep.csv (raw fractions) and workdir/sweep.md (percent); returns both paths."""
  header, rows = sweep_table(runs, variants)
  csv_path, md_path = os.path.join(workdir, "sweep.csv"), os.path.join(workdir, "sweep.md")
  with files.open_atomically(csv_path, newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows([["" if value is None else value for value in row] for row in rows])
  models = ["baseline", *(f"VIBE ({variant})" for variant in variants)]
  lines = [
      "ACC / ASR / RA in percent: clean test accuracy, attack success rate and robust "
      "accuracy on the triggered test set. One row per config; `-`: run missing or "
      "failed.",
      "",
      "| config | attack | "
      + " | ".join(f"{model} {m.upper()}" for model in models for m in METRICS)
      + " |",
      "|---|---|" + "---|" * (len(models) * len(METRICS)),
  ]
  for row in rows:
    values = dict(zip(header, row))
    attack = values["attack"] or "-"
    if values["label_mode"] and values["label_mode"] != "all_to_one":
      attack += f" ({values['label_mode']})"
    cells = [
        "-" if values[column] is None else f"{100 * values[column]:.2f}" for column in header[4:]
    ]
    lines.append(f"| {values['config']} | {attack} | " + " | ".join(cells) + " |")
  notes = baseline_notes(runs)
  if notes:
    lines += ["", *(f"Note: {note}" for note in notes)]
  files.write_text_atomically(md_path, "\n".join(lines) + "\n")
  return md_path, csv_path


PROGRAM = "python -m vibe_jax.sweep"


class _ArgumentParser(argparse.ArgumentParser):
  """argparse with its errors as one line and exit code 2 (without the usage block)."""

  def error(self, message: str) -> NoReturn:
    errors.exit_with_user_error(self.prog, f"{message} (see --help)")


def main(argv: list[str] | None = None) -> int:
  """The command line; a user error is one line and exit code 2 (VIBE_JAX_TRACEBACK=1 adds
  the traceback), a failed run is exit code 1."""
  return errors.run_reporting_user_errors(PROGRAM, lambda: _main(argv), verbosity_flag=False)


def _main(argv: list[str] | None) -> int:
  parser = _ArgumentParser(
      prog=PROGRAM,
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument(
      "--configs",
      required=True,
      nargs="+",
      help="config files or glob patterns (quote them), e.g. 'configs/digits_*.py'",
  )
  parser.add_argument("--variants", default="a", help="comma-separated variants, e.g. a,f")
  parser.add_argument("--workdir", required=True, help="the sweep's directory")
  parser.add_argument(
      "--overrides", default="", help="flags passed to every run, e.g. '--config.train.steps=100'"
  )
  args = parser.parse_args(argv)
  variants = [v.strip() for v in args.variants.split(",") if v.strip()]
  overrides = shlex.split(args.overrides)
  bad = [o for o in overrides if o.startswith("-") and not o.startswith("--config.")]
  if bad:
    parser.error(f"--overrides takes --config.<field>=<value> flags only, not {bad}.")
  try:
    for variant in variants:
      get_variant(variant)  # an unknown name fails here, listing the known ones
    runs = plan(expand_configs(args.configs), variants, args.workdir)
  except (ValueError, FileNotFoundError) as error:
    parser.error(str(error))
  os.makedirs(args.workdir, exist_ok=True)
  print(
      f"Sweep: {len(runs)} runs ({len(runs) // len(variants)} configs x variants "
      f"{','.join(variants)}) in {args.workdir}",
      flush=True,
  )
  failed = run_all(runs, overrides, log=lambda line: print(line, flush=True))
  md_path, csv_path = write_tables(runs, variants, args.workdir)
  with open(md_path) as f:
    print(f.read())
  print(f"Wrote {md_path} and {csv_path}.")
  if failed:
    print(f"{len(failed)} run(s) failed: " + ", ".join(f"{r.name}:{r.variant}" for r in failed))
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
