"""CIFAR-10 with the poison of a BackdoorBench attack record (attack 'backdoorbench'): VIBE
defends exactly the samples BackdoorBench poisoned, and the sweep's backdoorbench.csv rows
sit next to BackdoorBench's own defenses.

dataset.data_dir: the folder holding BackdoorBench's clean CIFAR-10 (its data/cifar10, the
original python batches, read directly); attack.params.record: the record folder.

  python main.py --config configs/cifar10_backdoorbench.py:a \
      --config.dataset.data_dir=~/BackdoorBench/data/cifar10 \
      --config.attack.params.record=~/BackdoorBench/record/badnet_0_1 --workdir runs/bb_badnet

For CIFAR-100 records use --config.dataset.name=cifar100 --config.vibe.kappa=20
--config.vibe.nu=20 (the reference's kappa there). Schedules as configs/cifar10_badnets.py.
"""

from configs import common


def get_config(arg: str = common.DEFAULT_VARIANT):
  return common.paper_config("cifar10", "backdoorbench", arg)
