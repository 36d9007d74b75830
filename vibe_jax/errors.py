"""User errors and bugs at the command line.

A user's mistake (a misspelt field, a missing file, a workdir of another experiment) fails
with a message that names the config field or file and the fix; a traceback on top of it
only hides that line, so the entry points (main.py, the sweep, convert_torch_ckpt.py) print
the one line and exit with code 2. Anything else is a bug and keeps its traceback (exit 1).
`--verbosity=1` (main.py, convert_torch_ckpt.py) or the environment variable
VIBE_JAX_TRACEBACK=1 shows the traceback of a user error too.

Which exceptions are user errors: UserError, raised where no built-in type fits, and the
built-in types the library raises for bad input with such a message (ValueError,
FileNotFoundError, FileExistsError, ...). A bug that raises one of those prints one line
as well; the traceback is one flag away.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn, TypeVar

__all__ = [
    "EXIT_USER_ERROR",
    "MissingArraysError",
    "TRACEBACK_ENV",
    "USER_ERRORS",
    "UserError",
    "exit_with_user_error",
    "one_line",
    "run_reporting_user_errors",
    "show_tracebacks",
]

T = TypeVar("T")

EXIT_USER_ERROR = 2
TRACEBACK_ENV = "VIBE_JAX_TRACEBACK"


class UserError(Exception):
  """A mistake in the user's input whose message names the field or file and the fix."""


class MissingArraysError(UserError, KeyError):
  """An input file lacks arrays it needs (a KeyError, printed without KeyError's quotes)."""

  def __str__(self) -> str:
    return str(self.args[0]) if self.args else ""


USER_ERRORS = (
    UserError,
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    FloatingPointError,
)


def show_tracebacks(verbosity: int = 0) -> bool:
  """Whether user errors keep their tracebacks: verbosity >= 1 or VIBE_JAX_TRACEBACK set."""
  return verbosity >= 1 or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def one_line(error: BaseException) -> str:
  """The message on one line (continuation lines joined with '; ')."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return "; ".join(lines) or type(error).__name__


def exit_with_user_error(program: str, error: BaseException | str) -> NoReturn:
  """Prints `program: error: <message>` on stderr and exits with EXIT_USER_ERROR."""
  message = error if isinstance(error, str) else one_line(error)
  print(f"{program}: error: {message}", file=sys.stderr, flush=True)
  sys.exit(EXIT_USER_ERROR)


def run_reporting_user_errors(
    program: str,
    function: Callable[[], T],
    *,
    verbosity: int = 0,
    verbosity_flag: bool = True,
    also: tuple[type[BaseException], ...] = (),
) -> T:
  """`function()`; a user error (USER_ERRORS, and `also`) exits with one line unless
  show_tracebacks, a bug raises. `verbosity_flag`: whether the program has --verbosity
  (absl programs do), for the hint."""
  if show_tracebacks(verbosity):
    return function()
  try:
    return function()
  except (*USER_ERRORS, *also) as error:
    how = f"--verbosity=1 or {TRACEBACK_ENV}=1" if verbosity_flag else f"{TRACEBACK_ENV}=1"
    exit_with_user_error(program, f"{one_line(error)} (traceback: {how})")
