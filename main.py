"""vibe_jax command line: train VIBE (and the undefended baseline) on a poisoned data set.

python main.py --config configs/digits_badnets.py --workdir /tmp/digits_badnets
python main.py --config configs/digits_badnets.py:f --config.train.steps=500 --workdir DIR
python main.py --config configs/digits_badnets.py:ssl --mode pretrain --workdir DIR  # SimCLR
python main.py --config configs/digits_badnets.py:ssl --config.ssl.method=all4one --mode pretrain --workdir DIR
python main.py --mode report --workdir DIR      # plots + report.md, even of an unfinished run
"""

from absl import app, flags, logging
from ml_collections import config_flags

from vibe_jax import run
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
    ["train", "eval", "extract", "pretrain", "report"],
    "train: train the baseline and VIBE (resuming from the workdir's "
    "checkpoints); eval: evaluate the workdir's saved models; extract: write "
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
    "train: start over in a --workdir that holds another experiment (or this one): its "
    "contents are moved to WORKDIR/replaced-<time>/, nothing is deleted. Without it such a "
    "workdir is refused, naming the config fields that differ.",
)
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  if flags.FLAGS.mode == "report":
    config = flags.FLAGS.config.to_dict() if flags.FLAGS.config is not None else None
    print(f"Report: {report.write_report(flags.FLAGS.workdir, config, flags.FLAGS.projection)}")
    return
  if flags.FLAGS.config is None:
    raise app.UsageError(f"--config is required for --mode {flags.FLAGS.mode}.")
  if flags.FLAGS.restart and flags.FLAGS.mode != "train":
    raise app.UsageError("--restart starts a training run over; it needs --mode train.")
  if flags.FLAGS.mode == "eval":
    run.evaluate_checkpoint(flags.FLAGS.config, flags.FLAGS.workdir)
  elif flags.FLAGS.mode == "extract":
    run.extract_features(flags.FLAGS.config, flags.FLAGS.workdir)
  elif flags.FLAGS.mode == "pretrain":
    pretrain.pretrain(flags.FLAGS.config, flags.FLAGS.workdir)
  else:
    run.train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir, restart=flags.FLAGS.restart)


if __name__ == "__main__":
  app.run(main)
