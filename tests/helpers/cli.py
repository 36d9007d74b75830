"""Runs an absl program of the repository root (main.py) in this process, as
`python main.py ARGS` would run it, without a fresh interpreter."""

from __future__ import annotations

import importlib
import sys

from absl import app, flags, logging  # noqa: F401  (their flags must outlive each run)
from absl.testing import flagsaver


def run_main(*args: str, program: str = "main") -> None:
  """Runs `program`.main as `app.run(main, flags_parser=parse_flags)` would for the command
  line `args`: the program's parse_flags (absl's, if it has none) parses them, config files
  and their --config.* overrides included; a user error exits (SystemExit, code 2) after
  its one line on stderr. The program is imported afresh inside a flagsaver, so the flags
  it defines (and the --config.* override flags the parse defines) are gone again
  afterwards and the next call parses from scratch."""
  argv = [f"{program}.py", *args]
  saved_argv = sys.argv
  sys.argv = argv  # config_flags reads the overrides from sys.argv
  try:
    with flagsaver.flagsaver():
      sys.modules.pop(program, None)
      module = importlib.import_module(program)
      module.main(getattr(module, "parse_flags", flags.FLAGS)(argv))
  finally:
    sys.argv = saved_argv
    sys.modules.pop(program, None)
