"""Your own labelled images, which may be poisoned: no attack is planted (attack.name =
'none'); --mode defend trains the undefended baseline and VIBE on them and relabels them.

  python main.py --config configs/own_data.py --config.dataset.data_dir=ROOT --mode defend \
      --workdir /tmp/my_defense
  python main.py --config configs/own_data.py --config.dataset.data_dir=ROOT \
      --config.dataset.options.validation_dir=VAL --config.dataset.options.image_size=32 \
      --mode defend --workdir /tmp/my_defense      # a clean validation set, images resized
  python main.py --config configs/own_data.py:f ...                     # variant F
  python main.py --config configs/own_data.py:npz --config.dataset.data_dir=data.npz ...
  python main.py --config configs/own_data.py:ss_a --config.backbone.checkpoint=CKPT ...

Training images at ROOT/<class>/<image> (any format PIL reads; class names are the folder
names); with `:npz` (combinable: `:f,npz`) an .npz with `images` and `labels`
(vibe_jax/data/own_data.py); with the name of a registered data set (`:a,digits`,
`:a,fashion_mnist`) that data set as given. Variants as everywhere: a, f on pixels; fm_a,
fm_f with --config.features.extractor=backbone (or a features file, which needs its test
arrays, vibe_jax/features.py); ss_a, ss_f fine-tune backbone.checkpoint, e.g. one from
`--mode pretrain` with this same config. The schedule is the digits one
(common.digits_config: 2,000 VIBE iterations, E-step every 250, lr 0.01 on frozen
features), sized for a few thousand images; scale train.steps with the data.
"""

import ml_collections

from configs import common
from vibe_jax.data.datasets import DATASETS


def get_config(arg: str = common.DEFAULT_VARIANT):
  """`arg`: VARIANT[,runlocal] as everywhere, plus optionally the data set: `npz`
  (npz_images) or any registered data set's name (e.g. `digits`, `fashion_mnist`: taken as
  given, no attack); image_folder otherwise."""
  tokens = [t for t in (arg or "").split(",") if t]
  names = [t for t in tokens if t == "npz" or t in DATASETS]
  config = common.digits_config(",".join(t for t in tokens if t not in names))
  name = {"npz": "npz_images"}.get(names[-1], names[-1]) if names else "image_folder"
  config.dataset.name = name
  config.dataset.options = ml_collections.ConfigDict(
      {"validation_dir": "", "image_size": 0} if name == "image_folder" else {}
  )
  common.set_attack(config, "none")
  return config
