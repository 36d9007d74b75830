"""Converts a PyTorch ResNet checkpoint into a vibe_jax backbone checkpoint.

    python convert_torch_ckpt.py --input=all4one.ckpt --output=backbones/all4one_r18 \
        --arch=resnet18 --stem=cifar

Accepts solo-learn Lightning .ckpt files, plain torchvision state dicts (.pth) and MoCo-style
checkpoints ('module.encoder_q.'). See docs/conversion.md for the key mapping. Needs torch
(requirements-dev.txt); the library itself never imports it. A bad input is one line on
stderr and exit code 2 (--verbosity=1 or VIBE_JAX_TRACEBACK=1 adds the traceback).
"""

from __future__ import annotations

from absl import app, flags, logging

from vibe_jax import convert, errors
from vibe_jax.models.resnet import ARCHITECTURES, STEMS

_INPUT = flags.DEFINE_string("input", None, "PyTorch checkpoint (.ckpt or .pth).", required=True)
_OUTPUT = flags.DEFINE_string(
    "output", None, "Backbone checkpoint directory to create.", required=True
)
_ARCH = flags.DEFINE_enum("arch", None, sorted(ARCHITECTURES), "Backbone arch.", required=True)
_STEM = flags.DEFINE_enum(
    "stem",
    None,
    list(STEMS),
    "'cifar': 3x3 stride-1 conv, no max-pool; 'imagenet': " "7x7 stride-2 conv + max-pool.",
    required=True,
)
_WIDTH = flags.DEFINE_integer("width", 64, "Base channel count (64 for standard ResNets).")
_ALLOW_UNSAFE_PICKLE = flags.DEFINE_bool(
    "allow_unsafe_pickle",
    False,
    "Load with torch.load(weights_only=False); runs code from the file, trusted files only.",
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace --output if it exists.")
PROGRAM = "convert_torch_ckpt.py"


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    errors.exit_with_user_error(PROGRAM, f"unexpected arguments {argv[1:]}; flags only.")
  verbosity = flags.FLAGS.verbosity if flags.FLAGS["verbosity"].present else 0
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO
  report = errors.run_reporting_user_errors(  # bad input: one line naming it, exit code 2
      PROGRAM,
      lambda: convert.convert_torch_checkpoint(
          _INPUT.value,
          _OUTPUT.value,
          arch=_ARCH.value,
          stem=_STEM.value,
          width=_WIDTH.value,
          allow_unsafe_pickle=_ALLOW_UNSAFE_PICKLE.value,
          overwrite=_OVERWRITE.value,
      ),
      verbosity=verbosity,
      also=(OSError,),
  )
  print(f"backbone prefix: {report.prefix!r}")
  print(f"dropped {len(report.dropped_keys)} keys (not part of the backbone):")
  for key in report.dropped_keys:
    print(f"  {key}")
  print(
      f"converted {report.num_converted} tensors -> {report.output} "
      f"(model_config {report.model_config})"
  )


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, a bad or missing flag as one line and exit code 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    errors.exit_with_user_error(PROGRAM, f"{errors.one_line(error)} (see --helpfull)")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
