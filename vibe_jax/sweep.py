"""A sweep: every (config, variant, seed, poisoning rate) run in its own workdir, then
paper-style tables and BackdoorBench leaderboard rows.

  python -m vibe_jax.sweep --configs 'configs/digits_*.py' --variants a,f --workdir runs/sweep
  python -m vibe_jax.sweep --configs configs/digits_badnets.py --variants a,f --seeds 0,1,2 \\
      --rates --workdir runs/rates   # --rates alone: BackdoorBench's 10, 5, 1, 0.5, 0.1 %
  python -m vibe_jax.sweep --configs configs/digits_badnets.py --variants a \\
      --overrides '--config.train.steps=100 --config.baseline.steps=100' --workdir /tmp/sweep

Each run is `python main.py --config PATH:VARIANT --workdir DIR/<config>_<variant>[_seed<S>]
[_rate<R>] OVERRIDES [--config.seed=S --config.attack.seed=S] [--config.attack.rate=R]` in a
subprocess (a crash or a leak in one run cannot take the others down), with its output in
<run>/run.log. A seed sets the run's seed and the attack's (which samples are poisoned);
the data split stays. A run whose results.json exists for the same overrides (stored in
<run>/sweep_overrides.json) is skipped, so an interrupted sweep resumes where it stopped;
one run with other overrides starts over, its old contents moved to <run>/replaced-<time>/.

Outputs, in DIR: sweep.md (percent) and sweep.csv (fractions): one row per config and
rate, ACC / ASR / RA of the victim (results.json `victim`, when runs have it), the baseline
head and VIBE for each variant, mean and sample standard deviation over the seeds, and
BackdoorBench's DER and RIR of each variant against the victim (against the baseline where
runs lack `victim`, said in the table). backdoorbench.csv: long-form rows in BackdoorBench's
leaderboard columns, one per (config, rate, defense), seeds averaged, for concatenating
with BackdoorBench's own results.

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

import numpy as np

from vibe_jax import errors, files
from vibe_jax.variants import get_variant

__all__ = [
    "BACKDOORBENCH_COLUMNS",
    "BACKDOORBENCH_RATES",
    "SweepRun",
    "backdoorbench_rows",
    "baseline_notes",
    "defense_effectiveness_rate",
    "expand_configs",
    "plan",
    "robust_improvement_rate",
    "run_all",
    "sweep_table",
    "write_tables",
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(ROOT, "main.py")
METRICS = ("acc", "asr", "ra")
OVERRIDES_FILE = "sweep_overrides.json"  # the overrides a pair's workdir was run with
# BackdoorBench's poisoning ratios (its leaderboard: 10 %, 5 %, 1 %, 0.5 %, 0.1 %).
BACKDOORBENCH_RATES = (0.1, 0.05, 0.01, 0.005, 0.001)
# BackdoorBench's leaderboard columns, then its two summary metrics.
BACKDOORBENCH_COLUMNS = (
    "dataset",
    "backbone",
    "attack_name",
    "defense_name",
    "ratio",
    "test_acc",
    "test_asr",
    "test_ra",
    "der",
    "rir",
)


@dataclasses.dataclass(frozen=True)
class SweepRun:
  """One (config, variant[, seed][, rate]) run and the workdir it runs in; seed and rate
  None: the config's own."""

  config_path: str
  variant: str
  workdir: str
  seed: int | None = None
  rate: float | None = None

  @property
  def name(self) -> str:
    return os.path.splitext(os.path.basename(self.config_path))[0]

  @property
  def results_path(self) -> str:
    return os.path.join(self.workdir, "results.json")

  def overrides(self, common: list[str]) -> list[str]:
    """The sweep's common overrides, then this run's axis values."""
    axes = []
    if self.seed is not None:
      axes += [f"--config.seed={self.seed}", f"--config.attack.seed={self.seed}"]
    if self.rate is not None:
      axes.append(f"--config.attack.rate={self.rate}")
    return [*common, *axes]

  def command(self, overrides: list[str]) -> list[str]:
    return [
        sys.executable,
        MAIN,
        f"--config={self.config_path}:{self.variant}",
        f"--workdir={self.workdir}",
        *self.overrides(overrides),
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


def plan(
    config_paths: list[str],
    variants: list[str],
    workdir: str,
    seeds: list[int] | None = None,
    rates: list[float] | None = None,
) -> list[SweepRun]:
  """Every (config, variant, seed, rate), in workdir/<config>_<variant>[_seed<S>][_rate<R>]
  (no seeds or rates: the configs' own, and no suffix)."""
  if not variants:
    raise ValueError("--variants is empty; pass e.g. a,f.")
  for rate in rates or ():
    if not 0.0 < rate < 1.0:
      raise ValueError(f"--rates {rate} must lie in (0, 1): a fraction, e.g. 0.1 for 10 %.")
  return [
      SweepRun(
          path,
          variant,
          os.path.join(
              workdir,
              f"{os.path.splitext(os.path.basename(path))[0]}_{variant}"
              + ("" if seed is None else f"_seed{seed}")
              + ("" if rate is None else f"_rate{rate:g}"),
          ),
          seed,
          rate,
      )
      for path in config_paths
      for rate in (rates or [None])
      for variant in variants
      for seed in (seeds or [None])
  ]


def run_all(runs: list[SweepRun], overrides: list[str], log=print) -> list[SweepRun]:
  """Runs each pair that has no results.json for these overrides; returns the runs that
  failed. A pair run before with other overrides (or of unknown ones) starts over: what its
  workdir held is moved to <workdir>/replaced-<time>/ (nothing deleted)."""
  failed = []
  for index, run in enumerate(runs, 1):
    prefix = f"[{index}/{len(runs)}] {run.name}:{run.variant}" + "".join(
        f" {axis} {value:g}"
        for axis, value in (("seed", run.seed), ("rate", run.rate))
        if value is not None
    )
    wanted = run.overrides(overrides)
    stored = _stored_overrides(run)
    if stored == wanted and os.path.exists(run.results_path):
      log(f"{prefix} skipped: {run.results_path} exists")
      continue
    if stored != wanted and os.path.isdir(run.workdir) and os.listdir(run.workdir):
      moved = files.move_contents_aside(run.workdir)
      previous = "unknown overrides" if stored is None else f"overrides {shlex.join(stored)!r}"
      log(f"{prefix}: ran before with {previous}; starting over (moved to {moved})")
    os.makedirs(run.workdir, exist_ok=True)
    files.write_json_atomically(
        os.path.join(run.workdir, OVERRIDES_FILE),
        {"config": f"{run.config_path}:{run.variant}", "overrides": wanted},
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


_RATINGS = (("der", defense_effectiveness_rate), ("rir", robust_improvement_rate))


@dataclasses.dataclass(frozen=True)
class _Finished:
  """A run with its results.json and the config.json its workdir holds ({} if none)."""

  run: SweepRun
  results: dict
  config: dict

  @property
  def rate(self) -> float | None:
    if self.run.rate is not None:
      return self.run.rate
    return self.config.get("attack", {}).get("rate")

  @property
  def reference(self) -> str | None:
    """What DER and RIR compare against: the deep victim, else the baseline head."""
    return next((k for k in ("victim", "baseline") if k in self.results), None)


def _finished(runs: list[SweepRun]) -> list[_Finished]:
  done = []
  for run in runs:
    results = _results(run)
    if results is not None:
      done.append(_Finished(run, results, _config(run)))
  return done


def _cells(runs: list[SweepRun]) -> dict[tuple[str, float | None], list[_Finished]]:
  """Finished runs by (config name, rate), in plan order; every planned cell is present."""
  cells = {(run.name, run.rate): [] for run in runs}
  for item in _finished(runs):
    cells.setdefault((item.run.name, item.run.rate), []).append(item)
  return cells


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
  """Mean and sample standard deviation (None for fewer than two values)."""
  if not values:
    return None, None
  return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def _per_seed(items: list[_Finished], key: str) -> list[dict]:
  """results[key] once per seed: phases shared by a seed's variants (the baseline on frozen
  features, the victim) from the first variant that has it."""
  seen = {}
  for item in items:
    if key in item.results:
      seen.setdefault(item.run.seed, item.results[key])
  return list(seen.values())


def _rated(items: list[_Finished], rating) -> list[float]:
  """`rating` (DER or RIR) of each run's VIBE against its victim (or baseline)."""
  return [rating(i.results[i.reference], i.results["vibe"]) for i in items if i.reference]


def _columns(variants: list[str]) -> list[str]:
  columns = ["config", "dataset", "attack", "label_mode", "rate", "seeds", "reference"]
  for model in ("victim", "baseline", *variants):
    for metric in METRICS:
      columns += [f"{model}_{metric}", f"{model}_{metric}_std"]
  for variant in variants:
    for metric in ("der", "rir"):
      columns += [f"{variant}_{metric}", f"{variant}_{metric}_std"]
  return columns


def sweep_table(runs: list[SweepRun], variants: list[str]) -> tuple[list[str], list[list]]:
  """The header and rows (one per config and rate) of the table, raw fractions: mean and
  sample standard deviation over the seeds of ACC / ASR / RA per model, DER and RIR per
  variant against the victim (results.json `victim`; the baseline head where a run lacks
  it: column `reference` says which).

  The baseline does not depend on the variant for frozen features, so its columns come
  from the first variant whose run finished (per seed); a variant whose own baseline
  differs (e.g. a Leiden-filtered one) is listed by `baseline_notes`.
  """
  header = _columns(variants)
  rows = []
  for (name, _), items in _cells(runs).items():
    row: dict = {"config": name}
    if items:
      first = items[0]
      row.update(
          dataset=first.results["config"].get("dataset", ""),
          attack=first.results["config"].get("attack", ""),
          label_mode=first.config.get("attack", {}).get("label_mode", ""),
          rate=first.rate,
          seeds=len({item.run.seed for item in items}),
          reference="/".join(sorted({item.reference for item in items if item.reference})),
      )
    for model in ("victim", "baseline"):
      measured = _per_seed(items, model)
      for metric in METRICS:
        row[f"{model}_{metric}"], row[f"{model}_{metric}_std"] = _mean_std(
            [phase[metric] for phase in measured]
        )
    for variant in variants:
      mine = [item for item in items if item.run.variant == variant]
      for metric in METRICS:
        row[f"{variant}_{metric}"], row[f"{variant}_{metric}_std"] = _mean_std(
            [item.results["vibe"][metric] for item in mine]
        )
      for metric, rating in _RATINGS:
        row[f"{variant}_{metric}"], row[f"{variant}_{metric}_std"] = _mean_std(_rated(mine, rating))
    rows.append([row.get(column) for column in header])
  return header, rows


def _backbone(config: dict, variant: str | None) -> str:
  """The model a row's numbers come from, in BackdoorBench's `backbone` column: the
  backbone's architecture where one is used, else the frozen features' source."""
  features = config.get("features", {})
  arch = config.get("backbone", {}).get("arch", "")
  if variant is None:  # the deep victim
    return config.get("victim", {}).get("arch", arch)
  if get_variant(variant).finetune_backbone:
    return arch
  if features.get("file"):
    return "features_file"
  extractor = features.get("extractor", "")
  return arch if extractor == "backbone" else extractor


def backdoorbench_rows(runs: list[SweepRun], variants: list[str]) -> list[dict]:
  """Long-form rows in BackdoorBench's leaderboard columns (BACKDOORBENCH_COLUMNS), seeds
  averaged: per (config, rate), the deep victim as defense 'no_defense' (when the runs
  have one), then each variant as 'vibe_<variant>' with its DER and RIR."""
  rows = []
  for (_, _), items in _cells(runs).items():
    if not items:
      continue
    first = items[0]
    common = {
        "dataset": first.results["config"].get("dataset", ""),
        "attack_name": first.results["config"].get("attack", ""),
        "ratio": first.rate,
    }
    victims = _per_seed(items, "victim")
    if victims:
      rows.append(
          {
              **common,
              "backbone": _backbone(first.config, None),
              "defense_name": "no_defense",
              **{f"test_{m}": _mean_std([v[m] for v in victims])[0] for m in METRICS},
          }
      )
    for variant in variants:
      mine = [item for item in items if item.run.variant == variant]
      if not mine:
        continue
      rows.append(
          {
              **common,
              "backbone": _backbone(mine[0].config, variant),
              "defense_name": f"vibe_{variant}",
              **{
                  f"test_{m}": _mean_std([item.results["vibe"][m] for item in mine])[0]
                  for m in METRICS
              },
              **{metric: _mean_std(_rated(mine, rating))[0] for metric, rating in _RATINGS},
          }
      )
  return [{column: row.get(column) for column in BACKDOORBENCH_COLUMNS} for row in rows]


def baseline_notes(runs: list[SweepRun]) -> list[str]:
  """Runs whose baseline differs from the one shown for their config (and seed, rate)."""
  notes, shown = [], {}
  for run in runs:
    results = _results(run)
    if results is None or "baseline" not in results:
      continue
    baseline = tuple(results["baseline"][m] for m in METRICS)
    reference = shown.setdefault((run.name, run.seed, run.rate), (run.variant, baseline))
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


def _config(run: SweepRun) -> dict:
  path = os.path.join(run.workdir, "config.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def _percent(mean: float | None, std: float | None) -> str:
  if mean is None:
    return "-"
  return f"{100 * mean:.2f}" + ("" if std is None else f" ± {100 * std:.2f}")


def write_tables(runs: list[SweepRun], variants: list[str], workdir: str) -> tuple[str, str, str]:
  """workdir/sweep.csv (raw fractions), workdir/sweep.md (percent) and
  workdir/backdoorbench.csv (BackdoorBench's leaderboard columns); returns the paths."""
  header, rows = sweep_table(runs, variants)
  csv_path, md_path = os.path.join(workdir, "sweep.csv"), os.path.join(workdir, "sweep.md")
  with files.open_atomically(csv_path, newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows([["" if value is None else value for value in row] for row in rows])
  bb_path = os.path.join(workdir, "backdoorbench.csv")
  with files.open_atomically(bb_path, newline="") as f:
    writer = csv.DictWriter(f, fieldnames=BACKDOORBENCH_COLUMNS)
    writer.writeheader()
    for row in backdoorbench_rows(runs, variants):
      writer.writerow({k: "" if v is None else v for k, v in row.items()})
  values = [dict(zip(header, row)) for row in rows]
  with_victim = any(v["victim_acc"] is not None for v in values)
  with_rate = any(run.rate is not None for run in runs)
  models = (["victim"] if with_victim else []) + ["baseline", *variants]
  titles = {"victim": "victim", "baseline": "baseline", **{v: f"VIBE ({v})" for v in variants}}
  seeds = sorted({run.seed for run in runs if run.seed is not None})
  lines = [
      "ACC / ASR / RA in percent: clean test accuracy, attack success rate and robust "
      "accuracy on the triggered test set; DER and RIR (BackdoorBench's defense "
      "effectiveness rating and robust improvement rate, in percent) of each VIBE variant "
      "against the deep victim (results.json `victim`), or against the baseline head where "
      "the runs have no victim (column `vs`). "
      + (
          f"Mean ± sample standard deviation over seeds {', '.join(map(str, seeds))}. "
          if len(seeds) > 1
          else ""
      )
      + "One row per config"
      + (" and poisoning rate" if with_rate else "")
      + "; `-`: run missing or failed.",
      "",
      "| config | attack | "
      + ("rate | " if with_rate else "")
      + " | ".join(f"{titles[model]} {m.upper()}" for model in models for m in METRICS)
      + " | "
      + " | ".join(f"{titles[v]} {m}" for v in variants for m in ("DER", "RIR"))
      + " | vs |",
      "|---|---|"
      + ("---|" if with_rate else "")
      + "---|" * (len(models) * len(METRICS) + 2 * len(variants) + 1),
  ]
  for row in values:
    attack = row["attack"] or "-"
    if row["label_mode"] and row["label_mode"] != "all_to_one":
      attack += f" ({row['label_mode']})"
    cells = [
        _percent(row[f"{model}_{m}"], row[f"{model}_{m}_std"]) for model in models for m in METRICS
    ]
    cells += [
        _percent(row[f"{v}_{m}"], row[f"{v}_{m}_std"]) for v in variants for m in ("der", "rir")
    ]
    rate = f"{100 * row['rate']:g} % | " if with_rate and row["rate"] is not None else ""
    rate = rate or ("- | " if with_rate else "")
    lines.append(
        f"| {row['config']} | {attack} | {rate}"
        + " | ".join(cells)
        + f" | {row['reference'] or '-'} |"
    )
  notes = baseline_notes(runs)
  if notes:
    lines += ["", *(f"Note: {note}" for note in notes)]
  files.write_text_atomically(md_path, "\n".join(lines) + "\n")
  return md_path, csv_path, bb_path


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
  parser.add_argument(
      "--seeds", default="", help="comma-separated seeds (config seed and attack.seed), e.g. 0,1,2"
  )
  parser.add_argument(
      "--rates",
      nargs="?",
      const=",".join(f"{r:g}" for r in BACKDOORBENCH_RATES),
      default="",
      help="comma-separated poisoning rates (fractions, e.g. 0.1,0.01); --rates alone: "
      "BackdoorBench's 0.1,0.05,0.01,0.005,0.001",
  )
  args = parser.parse_args(argv)
  variants = [v.strip() for v in args.variants.split(",") if v.strip()]
  overrides = shlex.split(args.overrides)
  bad = [o for o in overrides if o.startswith("-") and not o.startswith("--config.")]
  if bad:
    parser.error(f"--overrides takes --config.<field>=<value> flags only, not {bad}.")
  seeds = _numbers(parser, "--seeds", args.seeds, int)
  rates = _numbers(parser, "--rates", args.rates, float)
  axes = [("--config.seed=", seeds), ("--config.attack.seed=", seeds)]
  axes.append(("--config.attack.rate=", rates))
  clash = [o for o in overrides for flag, values in axes if values and o.startswith(flag)]
  if clash:
    parser.error(f"--overrides {clash} clash with --seeds / --rates, which set those fields.")
  try:
    for variant in variants:
      get_variant(variant)  # an unknown name fails here, listing the known ones
    runs = plan(expand_configs(args.configs), variants, args.workdir, seeds, rates)
  except (ValueError, FileNotFoundError) as error:
    parser.error(str(error))
  os.makedirs(args.workdir, exist_ok=True)
  configs = len({run.config_path for run in runs})
  print(
      f"Sweep: {len(runs)} runs ({configs} configs x variants {','.join(variants)}"
      + (f" x seeds {','.join(map(str, seeds))}" if seeds else "")
      + (f" x rates {','.join(f'{r:g}' for r in rates)}" if rates else "")
      + f") in {args.workdir}",
      flush=True,
  )
  failed = run_all(runs, overrides, log=lambda line: print(line, flush=True))
  md_path, csv_path, bb_path = write_tables(runs, variants, args.workdir)
  with open(md_path) as f:
    print(f.read())
  print(f"Wrote {md_path}, {csv_path} and {bb_path}.")
  if failed:
    print(f"{len(failed)} run(s) failed: " + ", ".join(os.path.basename(r.workdir) for r in failed))
  return 1 if failed else 0


def _numbers(parser: _ArgumentParser, flag: str, text: str, kind: type) -> list | None:
  """A comma-separated list of numbers; None when empty (the configs' own value)."""
  items = [item.strip() for item in text.split(",") if item.strip()]
  try:
    return [kind(item) for item in items] or None
  except ValueError:
    parser.error(
        f"{flag} {text!r}: expected comma-separated {kind.__name__}s, e.g. "
        + ("0,1,2" if kind is int else "0.1,0.01")
    )


if __name__ == "__main__":
  sys.exit(main())
