"""The command lines print one line for a user error (exit code 2) and keep the traceback of
a bug (exit code 1); --verbosity=1 or VIBE_JAX_TRACEBACK=1 shows a user error's too.

main.py runs in this process (helpers/cli.run_main, as app.run would run it: a user error
is SystemExit 2 after its line on stderr, anything else propagates, which is the traceback);
one user error and one bug run as real processes, for the exit codes themselves."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers.cli import run_main
from vibe_jax import errors
from vibe_jax import workdir as workdir_lib

from . import digits

ROOT = digits.ROOT


def cli(*args, env=None):
  """`python *args` from the repository root on the CPU; the finished process."""
  return subprocess.run(
      [sys.executable, *args],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=300,
      env={
          **{k: v for k, v in os.environ.items() if k != errors.TRACEBACK_ENV},
          "JAX_PLATFORMS": "cpu",
          **(env or {}),
      },
  )


def one_line_error(done) -> str:
  """The single stderr line of a user error (exit code 2, no traceback)."""
  lines = [line for line in done.stderr.splitlines() if line.strip()]
  assert done.returncode == 2, done.stderr[-3000:]
  assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
  return lines[0]


def main_user_error(capsys, monkeypatch, *args) -> str:
  """The single stderr line main.py, run in this process, exits with (code 2)."""
  monkeypatch.delenv(errors.TRACEBACK_ENV, raising=False)
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_:
    run_main(*args)
  err = capsys.readouterr().err
  lines = [line for line in err.splitlines() if line.strip()]
  assert exit_.value.code == errors.EXIT_USER_ERROR, err[-3000:]
  assert len(lines) == 1, err[-3000:]
  return lines[0]


@pytest.mark.parametrize(
    "args,expected",
    [
        (
            ["--config=configs/digits_badnets.py", "--config.train.stepz=3"],
            "main.py: error: --config.train.stepz: the config has no field 'stepz' (did you "
            "mean 'steps'?)",
        ),
        (["--config=configs/digits_badnets.py", "--config.attack.rate=2"], "attack.rate=2.0"),
        (["--config=configs/nonexistent.py"], "No such file or directory"),
        (["--config=configs/digits_badnets.py:zz"], "Unknown variant 'zz' (config field variant)"),
        (["--config=configs/digits_badnets.py", "--mode=eval"], "no trained experiment"),
        (["--config=configs/digits_badnets.py", "--mode=eval", "--restart"], "--mode train"),
    ],
    ids=["misspelt-field", "bad-rate", "missing-config", "bad-variant", "eval-empty", "restart"],
)
def test_main_user_errors_are_one_line(tmp_path, capsys, monkeypatch, args, expected):
  assert expected in main_user_error(capsys, monkeypatch, f"--workdir={tmp_path}", *args)


def test_main_user_error_from_the_command_line(tmp_path):
  """The real process: exit code 2, one line on stderr."""
  done = cli("main.py", f"--workdir={tmp_path}", "--config=configs/digits_badnets.py:zz")
  assert "Unknown variant 'zz' (config field variant)" in one_line_error(done)


def test_main_refuses_a_workdir_of_another_experiment_in_one_line(tmp_path, capsys, monkeypatch):
  config = digits.config("a", "badnets")
  workdir_lib.record_experiment(config, str(tmp_path), workdir_lib.identity_of(config))
  (tmp_path / "results.json").write_text("{}")
  line = main_user_error(
      capsys,
      monkeypatch,
      "--config=configs/digits_blend.py",
      f"--workdir={tmp_path}",
      "--config.report.enabled=False",
  )
  assert "holds another experiment" in line and "attack.name 'badnets' -> 'blend'" in line
  assert "--restart" in line


@pytest.mark.parametrize("how", ["env", "flag"])
def test_tracebacks_on_request(tmp_path, monkeypatch, how):
  """With either, the user error is raised (its traceback printed) instead of one line."""
  monkeypatch.delenv(errors.TRACEBACK_ENV, raising=False)
  if how == "env":
    monkeypatch.setenv(errors.TRACEBACK_ENV, "1")
  args = ["--config=configs/digits_badnets.py", "--config.attack.rate=2", f"--workdir={tmp_path}"]
  with pytest.raises(Exception, match=r"attack\.rate=2\.0 must lie in \(0, 1\)"):
    run_main(*args, *(["--verbosity=1"] if how == "flag" else []))


BUG = (
    "import runpy, sys\n"
    "from vibe_jax import run\n"
    "def bug(*args, **kwargs):\n"
    "  return dict()['not a user error']\n"
    "run.train_and_evaluate = bug\n"
    "sys.argv = ['main.py', '--config=configs/digits_badnets.py', '--workdir={workdir}']\n"
    "runpy.run_path('main.py', run_name='__main__')\n"
)


def test_a_bug_keeps_its_traceback(tmp_path):
  done = cli("-c", BUG.format(workdir=tmp_path))
  assert done.returncode == 1
  assert "Traceback" in done.stderr and "KeyError: 'not a user error'" in done.stderr


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--configs", "configs/nothing_*.py", "--variants", "a"], "matches no file"),
        (["--configs", "configs/digits_badnets.py", "--variants", "zz"], "Unknown variant 'zz'"),
        (["--variants", "a"], "the following arguments are required: --configs"),
    ],
    ids=["no-match", "bad-variant", "no-configs"],
)
def test_sweep_user_errors_are_one_line(tmp_path, args, expected):
  line = one_line_error(cli("-m", "vibe_jax.sweep", f"--workdir={tmp_path}", *args))
  assert line.startswith("python -m vibe_jax.sweep: error: ") and expected in line


def test_user_error_helper_lets_bugs_through():
  with pytest.raises(RuntimeError):
    errors.run_reporting_user_errors("p", lambda: (_ for _ in ()).throw(RuntimeError("bug")))
  with pytest.raises(SystemExit) as exit_:
    errors.run_reporting_user_errors("p", lambda: (_ for _ in ()).throw(ValueError("bad")))
  assert exit_.value.code == errors.EXIT_USER_ERROR
