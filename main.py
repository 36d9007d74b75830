"""vibe_jax command line: train VIBE (and the undefended baseline) on a poisoned data set.

python main.py --config configs/digits_badnets.py --workdir /tmp/digits_badnets
python main.py --config configs/digits_badnets.py:f --config.train.steps=500 --workdir DIR
python main.py --config configs/digits_badnets.py --mode pretrain --workdir DIR  # SimCLR
python main.py --config configs/digits_badnets.py --config.ssl.method=all4one --mode pretrain \
    --workdir DIR
python main.py --config configs/own_data.py --config.dataset.data_dir=ROOT --mode defend \
    --workdir DIR                               # your own images: relabel.csv, suspicious.csv
python main.py --mode report --workdir DIR      # plots + report.md, even of an unfinished run
python main.py --config configs/digits_blend.py --workdir DIR --restart  # DIR held another run

A user error (a misspelt field, a missing file, a workdir of another experiment) is one line
on stderr and exit code 2; --verbosity=1 or VIBE_JAX_TRACEBACK=1 adds its traceback.
"""

import re

from absl import app, flags, logging
from ml_collections import config_flags

from vibe_jax import errors, run
from vibe_jax.report import report
from vibe_jax.ssl import pretrain

config_flags.DEFINE_config_file(
    "config",
    None,
    "Experiment config file; `path.py:ARG` passes ARG (the variant) to "
    "get_config. Override any field with --config.a.b=value.",
    lock_config=True,
)
flags.DEFINE_string(
    "workdir", None, "Directory for the resolved config, logs, caches and " "results.json."
)
flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "defend", "eval", "extract", "pretrain", "report"],
    "train: train the baseline and VIBE (resuming from the workdir's "
    "checkpoints); defend: train as train, then relabel the training set with the "
    "defended model (relabel.csv, suspicious.csv, defense.json; configs/own_data.py for "
    "your own images); eval: evaluate the workdir's saved models; extract: write "
    "the frozen features and labels to WORKDIR/features_file.npz; pretrain: "
    "SimCLR or All4One (config.ssl.method) on the poisoned, unlabelled "
    "training set (config.ssl), writing "
    "the backbone checkpoint WORKDIR/backbone for backbone.checkpoint; report: "
    "regenerate workdir/plots and workdir/report.md from what the run wrote "
    "(--config optional: the workdir's config.json is used, --config only "
    "when it is missing).",
)
flags.DEFINE_enum(
    "projection",
    "pca",
    ["pca", "umap"],
    "report: 2-D projection of the training features (umap needs umap-learn).",
)
flags.DEFINE_bool(
    "restart",
    False,
    "train, defend: start over in a --workdir that holds another experiment (or this one): its "
    "contents are moved to WORKDIR/replaced-<time>/, nothing is deleted. Without it such a "
    "workdir is refused, naming the config fields that differ.",
)
flags.mark_flags_as_required(["workdir"])


PROGRAM = "main.py"


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag or --config override (a misspelt field, a value
  of the wrong type, a config file that is missing or fails) as one line and exit code 2."""
  try:
    remaining = flags.FLAGS(argv)
    if flags.FLAGS.config is not None:
      flags.FLAGS.config.to_dict  # a config file that failed to load raises here  # noqa: B018
    return remaining
  except Exception as error:  # pylint: disable=broad-except  # ml_collections raises many
    if errors.show_tracebacks():
      raise
    errors.exit_with_user_error(PROGRAM, _flag_error(error, argv))


def _flag_error(error: Exception, argv: list[str]) -> str:
  """One line for a flag-parsing error: for an unknown field the --config override that
  names it, for a config file that raised its last line, for a missing one the OS error."""
  text = str(error)
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if "Traceback (most recent call last)" in text:  # get_config raised: keep its message
    return f"{lines[0].rstrip(':')}: {lines[-1]}"
  if isinstance(error, (AttributeError, KeyError)):
    inner = error.args[0] if error.args else ""
    if isinstance(inner, KeyError):
      inner = inner.args[0] if inner.args else ""
    guess = re.search(r'Did you mean "(\w+)" instead of "(\w+)"', str(inner))
    field = guess.group(2) if guess else str(inner).strip("'\"")
    flag = next(
        (
            arg.split("=", 1)[0]
            for arg in argv
            if arg.startswith("--config.") and field in arg.split("=", 1)[0].split(".")
        ),
        "a --config override",
    )
    hint = f" (did you mean {guess.group(1)!r}?)" if guess else ""
    return f"{flag}: the config has no field {field!r}{hint}."
  if isinstance(error, OSError):
    return f"--config: {next((l for l in reversed(lines) if '[Errno' in l), lines[-1])}"
  return f"{errors.one_line(error)} (see --helpfull)"


def main(argv):
  if len(argv) > 1:
    errors.exit_with_user_error(PROGRAM, f"unexpected arguments {argv[1:]}; flags only.")
  verbosity = flags.FLAGS.verbosity if flags.FLAGS["verbosity"].present else 0
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  errors.run_reporting_user_errors(PROGRAM, lambda: run_mode(flags.FLAGS), verbosity=verbosity)


def run_mode(options: flags.FlagValues) -> None:
  """The mode's library entry point, with the flags as explicit arguments."""
  if options.mode == "report":
    config = options.config.to_dict() if options.config is not None else None
    print(f"Report: {report.write_report(options.workdir, config, options.projection)}")
    return
  if options.config is None:
    raise errors.UserError(f"--config is required for --mode {options.mode}.")
  if options.restart and options.mode not in ("train", "defend"):
    raise errors.UserError(
        "--restart starts a training run over; it needs --mode train or --mode defend."
    )
  if options.mode == "eval":
    run.evaluate_checkpoint(options.config, options.workdir)
  elif options.mode == "extract":
    run.extract_features(options.config, options.workdir)
  elif options.mode == "pretrain":
    pretrain.pretrain(options.config, options.workdir)
  elif options.mode == "defend":
    run.defend(options.config, options.workdir, restart=options.restart)
  else:
    run.train_and_evaluate(options.config, options.workdir, restart=options.restart)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
