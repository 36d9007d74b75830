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
names), or with `:npz` (combinable: `:f,npz`) an .npz with `images` and `labels`
(vibe_jax/data/own_data.py). Variants as everywhere (a, f on pixels; fm_a, fm_f with
--config.features.extractor=backbone or --config.features.file; ss_a, ss_f fine-tune
backbone.checkpoint, e.g. from `--mode pretrain` with this same config). The schedule is
the digits one (common.digits_config: 2,000 VIBE iterations, E-step every 250, lr 0.01 on
frozen features), sized for a few thousand images; scale train.steps with the data.
"""

import ml_collections

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  tokens = [t for t in (arg or "").split(",") if t]
  npz = "npz" in tokens
  config = common.digits_config(",".join(t for t in tokens if t != "npz"))
  config.dataset.name = "npz_images" if npz else "image_folder"
  config.dataset.options = ml_collections.ConfigDict(
      {} if npz else {"validation_dir": "", "image_size": 0}
  )
  common.set_attack(config, "none")
  return config
