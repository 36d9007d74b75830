"""The tests' configs: an experiment's own config on configs/common.set_runlocal's one tiny
schedule, with the report and TensorBoard off, plus the overrides a test's assertion needs."""

from __future__ import annotations

import glob
import importlib
import os
from typing import Any, Mapping

import ml_collections

from helpers import ROOT

# Every experiment config: configs/<name>.py.
CONFIGS = sorted(
    os.path.basename(p)[:-3]
    for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    if not p.endswith(("common.py", "__init__.py"))
)


def set_fields(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> None:
  """Sets dotted fields, e.g. {'train.steps': 10, 'baseline.enabled': False}."""
  for field, value in overrides.items():
    *path, last = field.split(".")
    node = config
    for part in path:
      node = node[part]
    node[last] = value


def experiment_config(
    module: str = "digits_badnets",
    arg: str = "a",
    overrides: Mapping[str, Any] | None = None,
    *,
    report: bool = False,
) -> ml_collections.ConfigDict:
  """configs/<module>.get_config(arg), the report and TensorBoard off unless `report`."""
  config = importlib.import_module(f"configs.{module}").get_config(arg)
  config.report.enabled = config.report.tensorboard = report
  set_fields(config, overrides or {})
  return config


def tiny_config(
    module: str = "digits_badnets",
    variant: str = "a",
    overrides: Mapping[str, Any] | None = None,
    *,
    report: bool = False,
) -> ml_collections.ConfigDict:
  """The runlocal smoke schedule of an experiment (get_config('VARIANT,runlocal'): 40
  baseline and 40 VIBE steps of batch 64, an E-step, evaluation and checkpoint every 20,
  backbones of width 4), the report off unless `report`, then `overrides`."""
  return experiment_config(module, f"{variant},runlocal", overrides, report=report)
