"""PyTorch -> Flax conversion, checked against an independent PyTorch ResNet (torchvision names).

Each checkpoint format is written the way its producer writes it, converted, loaded with
vibe_jax.models.load_backbone, and compared feature for feature with PyTorch in eval mode.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from helpers import ROOT
from helpers.cli import run_main
from helpers.configs import tiny_config
from vibe_jax import convert, run
from vibe_jax.data import datasets
from vibe_jax.models import StateMismatchError, load_backbone, load_backbone_model

FEATURE_ATOL = 1e-4


@pytest.fixture(scope="module")
def torch() -> Any:
  return pytest.importorskip("torch")


def _torch_model(arch: str, stem: str, width: int = 64, *, seed: int = 0, with_fc: bool = False):
  import torch
  from helpers.torch_resnet_reference import TorchResNet, randomise_batch_norms

  torch.manual_seed(seed)
  model = TorchResNet(arch, stem=stem, width=width, with_fc=with_fc)
  randomise_batch_norms(model, seed=seed + 1)
  return model.eval()


def _torch_features(model, images_nhwc: np.ndarray) -> np.ndarray:
  import torch

  with torch.no_grad():
    return model(torch.from_numpy(images_nhwc.transpose(0, 3, 1, 2))).numpy()


def _images(size: int, batch: int = 3, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).standard_normal((batch, size, size, 3), dtype=np.float32)


def _assert_same_features(torch_model, checkpoint_dir: pathlib.Path, size: int) -> None:
  images = _images(size)
  expected = _torch_features(torch_model, images)
  actual = np.asarray(load_backbone(checkpoint_dir)(images))
  assert actual.shape == expected.shape
  assert 0.05 < np.abs(expected).mean() < 100  # a meaningful scale for an absolute tolerance
  np.testing.assert_allclose(actual, expected, rtol=0, atol=FEATURE_ATOL)


def _with_prefix(state_dict: dict[str, Any], prefix: str) -> dict[str, Any]:
  return {f"{prefix}{key}": value for key, value in state_dict.items()}


def _save_solo_learn_ckpt(torch, model, path: pathlib.Path, name: str = "backbone") -> None:
  """Lightning layout: backbone under 'backbone.' (solo-learn before December 2021:
  name='encoder'), plus the method's other modules."""
  backbone = model.state_dict()
  head = {"0.weight": torch.randn(16, model.feature_dim), "0.bias": torch.randn(16)}
  state_dict = {
      **_with_prefix(backbone, f"{name}."),
      **_with_prefix({k: v.clone() for k, v in backbone.items()}, f"momentum_{name}."),
      **_with_prefix(head, "projector."),
      **_with_prefix(head, "momentum_projector."),
      **_with_prefix(head, "predictor."),
      "classifier.weight": torch.randn(10, model.feature_dim),
      "classifier.bias": torch.randn(10),
      "queue": torch.randn(32, 16),
      "queue_ptr": torch.zeros(1, dtype=torch.long),
  }
  ckpt = {
      "epoch": 999,
      "global_step": 12345,
      "pytorch-lightning_version": "2.0.0",
      "state_dict": state_dict,
      "hyper_parameters": {"method": "all4one", "lr": 1.0},
  }
  torch.save(ckpt, path)


def _save_moco_ckpt(torch, model, path: pathlib.Path) -> None:
  """MoCo layout: DDP 'module.', query encoder with an fc, key encoder and queue."""
  state_dict = model.state_dict()
  ckpt = {
      "epoch": 200,
      "arch": "resnet50",
      "state_dict": {
          **_with_prefix(state_dict, "module.encoder_q."),
          **_with_prefix(state_dict, "module.encoder_k."),
          "module.queue": torch.randn(128, 64),
          "module.queue_ptr": torch.zeros(1, dtype=torch.long),
      },
      "optimizer": {"state": {}, "param_groups": []},
  }
  torch.save(ckpt, path)


def test_solo_learn_ckpt_resnet18_cifar(torch, tmp_path: pathlib.Path) -> None:
  model = _torch_model("resnet18", "cifar")
  _save_solo_learn_ckpt(torch, model, tmp_path / "all4one.ckpt")

  report = convert.convert_torch_checkpoint(
      tmp_path / "all4one.ckpt", tmp_path / "backbone", arch="resnet18", stem="cifar"
  )

  assert report.prefix == "backbone."
  assert report.num_converted == len(
      [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
  )
  dropped = set(report.dropped_keys)
  for key in [
      "momentum_backbone.conv1.weight",
      "projector.0.weight",
      "momentum_projector.0.bias",
      "predictor.0.weight",
      "classifier.weight",
      "queue",
      "queue_ptr",
      "backbone.bn1.num_batches_tracked",
  ]:
    assert key in dropped
  assert not any(key.startswith("backbone.") and "num_batches" not in key for key in dropped)
  metadata = json.loads((tmp_path / "backbone" / "backbone.json").read_text())
  assert metadata["model_config"] == {"arch": "resnet18", "stem": "cifar", "width": 64}
  _assert_same_features(model, tmp_path / "backbone", size=32)


def test_moco_ckpt_resnet50_imagenet(torch, tmp_path: pathlib.Path) -> None:
  model = _torch_model("resnet50", "imagenet", with_fc=True)
  _save_moco_ckpt(torch, model, tmp_path / "moco.pth.tar")

  report = convert.convert_torch_checkpoint(
      tmp_path / "moco.pth.tar", tmp_path / "backbone", arch="resnet50", stem="imagenet"
  )

  assert report.prefix == "module.encoder_q."
  dropped = set(report.dropped_keys)
  assert {"module.encoder_q.fc.weight", "module.encoder_q.fc.bias"} <= dropped
  assert {"module.encoder_k.conv1.weight", "module.queue", "module.queue_ptr"} <= dropped
  _assert_same_features(model, tmp_path / "backbone", size=32)


def test_plain_state_dict_resnet18_imagenet_via_cli(torch, tmp_path: pathlib.Path, capsys) -> None:
  model = _torch_model("resnet18", "imagenet", with_fc=True)
  torch.save(model.state_dict(), tmp_path / "resnet18.pth")

  run_main(
      f"--input={tmp_path / 'resnet18.pth'}",
      f"--output={tmp_path / 'backbone'}",
      "--arch=resnet18",
      "--stem=imagenet",
      "--width=64",
      program="convert_torch_ckpt",
  )

  out = capsys.readouterr().out
  assert "dropped 22 keys" in out  # fc.weight, fc.bias, 20 num_batches_tracked
  assert "  fc.weight\n" in out
  _assert_same_features(model, tmp_path / "backbone", size=64)


def test_state_dict_wrapped_under_model_key(torch, tmp_path: pathlib.Path) -> None:
  model = _torch_model("resnet18", "cifar", width=8, seed=3)
  torch.save({"model": model.state_dict(), "epoch": 1}, tmp_path / "wrapped.pth")

  convert.convert_torch_checkpoint(
      tmp_path / "wrapped.pth", tmp_path / "backbone", arch="resnet18", stem="cifar", width=8
  )

  _assert_same_features(model, tmp_path / "backbone", size=16)


def test_train_mode_matches_pytorch(torch, tmp_path: pathlib.Path) -> None:
  """Train-mode BN: same outputs and running-mean update as PyTorch; running var differs
  only by PyTorch's unbiased n/(n-1) factor on the batch variance (docs/conversion.md)."""
  torch_model = _torch_model("resnet18", "cifar", width=8, seed=5)
  torch.save(torch_model.state_dict(), tmp_path / "r18.pth")
  convert.convert_torch_checkpoint(
      tmp_path / "r18.pth", tmp_path / "backbone", arch="resnet18", stem="cifar", width=8
  )
  flax_model = load_backbone_model(tmp_path / "backbone")
  old_var = torch_model.bn1.running_var.numpy().copy()
  images = _images(16, batch=4, seed=1)

  torch_model.train()
  with torch.no_grad():
    expected = torch_model(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
  flax_model.train()
  actual = np.asarray(flax_model(images))

  np.testing.assert_allclose(actual, expected, rtol=0, atol=FEATURE_ATOL)
  np.testing.assert_allclose(
      flax_model.bn1.mean[...], torch_model.bn1.running_mean.numpy(), rtol=0, atol=1e-5
  )
  n = 4 * 18 * 18  # batch * spatial size after the padding-2 CIFAR stem conv
  torch_batch_var = (torch_model.bn1.running_var.numpy() - 0.9 * old_var) / 0.1
  np.testing.assert_allclose(
      flax_model.bn1.var[...],
      0.9 * old_var + 0.1 * torch_batch_var * (n - 1) / n,
      rtol=1e-5,
      atol=1e-5,
  )


def _resnet18_cifar_tensors(width: int = 8) -> dict[str, np.ndarray]:
  """A width-8 CIFAR ResNet-18 state dict as numpy, num_batches_tracked split off."""
  model = _torch_model("resnet18", "cifar", width)
  state_dict = {key: value.numpy() for key, value in model.state_dict().items()}
  return convert.split_backbone(state_dict).tensors


def test_missing_key_error_lists_keys(torch) -> None:
  tensors = _resnet18_cifar_tensors()
  del tensors["layer1.0.bn1.running_var"]
  del tensors["layer4.1.conv2.weight"]
  with pytest.raises(StateMismatchError, match="missing") as error:
    convert.torch_to_flax(tensors, {"arch": "resnet18", "stem": "cifar", "width": 8})
  assert error.value.missing == ["layer1.0.bn1.running_var", "layer4.1.conv2.weight"]
  assert "layer4.1.conv2.weight" in str(error.value)
  assert not error.value.unexpected and not error.value.mismatched


def test_unexpected_key_error(torch) -> None:
  tensors = _resnet18_cifar_tensors()
  tensors["layer5.0.conv1.weight"] = np.zeros((8, 8, 3, 3), np.float32)
  tensors["layer1.0.bn1.some_buffer"] = np.zeros((8,), np.float32)
  with pytest.raises(StateMismatchError, match="unexpected") as error:
    convert.torch_to_flax(tensors, {"arch": "resnet18", "stem": "cifar", "width": 8})
  assert error.value.unexpected == ["layer1.0.bn1.some_buffer", "layer5.0.conv1.weight"]
  assert not error.value.missing


def test_shape_mismatch_names_key_and_both_shapes(torch) -> None:
  """CIFAR-stem weights converted as an ImageNet-stem backbone: only the stem conv differs."""
  tensors = _resnet18_cifar_tensors()
  with pytest.raises(StateMismatchError) as error:
    convert.torch_to_flax(tensors, {"arch": "resnet18", "stem": "imagenet", "width": 8})
  assert error.value.mismatched == [
      "conv1.weight: checkpoint has (8, 3, 3, 3), the backbone needs (8, 3, 7, 7)"
  ]
  assert not error.value.missing and not error.value.unexpected


def test_wrong_arch_fails_with_full_lists(torch) -> None:
  tensors = _resnet18_cifar_tensors()
  with pytest.raises(StateMismatchError) as error:
    convert.torch_to_flax(tensors, {"arch": "resnet50", "stem": "cifar", "width": 8})
  assert "layer1.0.conv3.weight" in error.value.missing
  assert (
      "layer1.0.conv1.weight: checkpoint has (8, 8, 3, 3), the backbone needs (8, 8, 1, 1)"
      in error.value.mismatched
  )


def test_load_backbone_rejects_a_checkpoint_that_does_not_fit(
    torch, tmp_path: pathlib.Path
) -> None:
  model = _torch_model("resnet18", "cifar", width=8)
  torch.save(model.state_dict(), tmp_path / "r18.pth")
  convert.convert_torch_checkpoint(
      tmp_path / "r18.pth", tmp_path / "backbone", arch="resnet18", stem="cifar", width=8
  )
  metadata_path = tmp_path / "backbone" / "backbone.json"
  metadata = json.loads(metadata_path.read_text())
  metadata["model_config"]["width"] = 16
  metadata_path.write_text(json.dumps(metadata))
  expected = r"conv1\.kernel: expected \(3, 3, 3, 16\), got \(3, 3, 3, 8\)"
  with pytest.raises(StateMismatchError, match=expected):
    load_backbone(tmp_path / "backbone")


def test_old_solo_learn_encoder_prefix(torch, tmp_path: pathlib.Path) -> None:
  """solo-learn before about December 2021 saved 'encoder.' / 'momentum_encoder.' (its issue
  #127): every backbone tensor is read from 'encoder.' (the name-for-name mapping and the
  features are checked on the current layout, test_solo_learn_ckpt_resnet18_cifar)."""
  model = _torch_model("resnet18", "cifar", width=8)
  _save_solo_learn_ckpt(torch, model, tmp_path / "old.ckpt", name="encoder")
  backbone = convert.split_backbone(convert.read_torch_checkpoint(tmp_path / "old.ckpt"))
  assert backbone.prefix == "encoder."
  expected = {k: v for k, v in model.state_dict().items() if "num_batches" not in k}
  assert sorted(backbone.tensors) == sorted(expected)
  for key, tensor in expected.items():
    np.testing.assert_array_equal(np.asarray(backbone.tensors[key]), tensor.numpy())
  assert "momentum_encoder.conv1.weight" in backbone.dropped_keys


def test_unknown_layouts_fail_with_what_was_found() -> None:
  with pytest.raises(ValueError, match=r"no ResNet stem conv.*module\.encoder_q\."):
    convert.split_backbone({"net.conv1.weight": np.zeros((1,))})
  with pytest.raises(ValueError, match=r"top-level keys are \['epoch', 'optimizer'\]"):
    convert.unwrap_state_dict({"epoch": 3, "optimizer": {"lr": 0.1}})


def test_untrusted_pickle_needs_explicit_opt_in(torch, tmp_path: pathlib.Path) -> None:
  model = _torch_model("resnet18", "cifar", width=8)
  path = tmp_path / "lightning.ckpt"
  ckpt = {
      "state_dict": _with_prefix(model.state_dict(), "backbone."),
      "hyper_parameters": argparse.Namespace(lr=1.0),
  }  # an arbitrary pickled object
  torch.save(ckpt, path)
  with pytest.raises(ValueError, match="--allow_unsafe_pickle"):
    convert.read_torch_checkpoint(path)
  state_dict = convert.read_torch_checkpoint(path, allow_unsafe_pickle=True)
  assert "backbone.conv1.weight" in state_dict


def test_existing_output_is_not_overwritten(torch, tmp_path: pathlib.Path) -> None:
  model = _torch_model("resnet18", "cifar", width=8)
  torch.save(model.state_dict(), tmp_path / "r18.pth")
  (tmp_path / "backbone").mkdir()
  with pytest.raises(FileExistsError, match="--overwrite"):
    convert.convert_torch_checkpoint(
        tmp_path / "r18.pth", tmp_path / "backbone", arch="resnet18", stem="cifar", width=8
    )
  convert.convert_torch_checkpoint(
      tmp_path / "r18.pth",
      tmp_path / "backbone",
      arch="resnet18",
      stem="cifar",
      width=8,
      overwrite=True,
  )
  assert (tmp_path / "backbone" / "backbone.json").is_file()
  assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_vibe_jax_import_path_does_not_import_torch() -> None:
  code = (
      "import sys\n"
      "import vibe_jax, vibe_jax.models, vibe_jax.checkpoint, vibe_jax.convert\n"
      "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
      "assert not loaded, loaded\n"
  )
  result = subprocess.run(
      [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
  )
  assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize(
    "backbone_prefix, other_keys",
    [
        ("module.encoder_q.", ["module.encoder_q.fc.0.weight", "module.encoder_k.conv1.weight"]),
        ("module.encoder_q.backbone.", ["module.encoder_q.projector.weight", "module.queue"]),
        ("encoder_q.", ["encoder_q.fc.weight", "encoder_k.conv1.weight", "queue"]),
        ("module.backbone.", ["module.projector.0.weight", "module.momentum_backbone.bn1.bias"]),
        ("backbone.", ["momentum_backbone.conv1.weight", "predictor2.0.weight", "queue_y"]),
        ("encoder.", ["momentum_encoder.conv1.weight", "projector.0.weight"]),
        ("module.encoder.", ["module.momentum_encoder.bn1.bias", "module.projector.0.bias"]),
        ("module.", ["module.fc.weight", "module.fc.bias"]),
        ("", ["fc.weight", "fc.bias"]),
    ],
)
def test_backbone_prefix_per_layout(backbone_prefix: str, other_keys: list[str]) -> None:
  """The layouts table in docs/conversion.md, on key names alone (no torch needed)."""
  backbone_keys = ["conv1.weight", "bn1.running_var", "bn1.num_batches_tracked"]
  state_dict = {f"{backbone_prefix}{key}": np.zeros((1,)) for key in backbone_keys}
  state_dict.update({key: np.zeros((1,)) for key in other_keys})

  split = convert.split_backbone(state_dict)

  assert split.prefix == backbone_prefix
  assert sorted(split.tensors) == ["bn1.running_var", "conv1.weight"]
  assert split.dropped_keys == sorted([*other_keys, f"{backbone_prefix}bn1.num_batches_tracked"])


@pytest.mark.slow
def test_converted_backbone_drives_vibe_on_digits(torch, tmp_path: pathlib.Path) -> None:
  """A solo-learn CIFAR-stem ResNet-18 (narrow, for speed), converted, then VIBE's frozen
  extractor (fm_a): the run's features are PyTorch's, L2-normalised. (Fine-tuning a
  converted backbone starts from load_backbone_model, test_train_mode_matches_pytorch; an
  SS-F run: e2e/test_pretrain_pipeline.py.)"""
  model = _torch_model("resnet18", "cifar", width=8)
  _save_solo_learn_ckpt(torch, model, tmp_path / "all4one.ckpt")
  convert.convert_torch_checkpoint(
      tmp_path / "all4one.ckpt", tmp_path / "backbone", arch="resnet18", stem="cifar", width=8
  )
  config = tiny_config(
      "digits_badnets",
      "fm_a",
      {"backbone.checkpoint": str(tmp_path / "backbone"), "features.extractor": "backbone"},
  )
  results = run.train_and_evaluate(config, str(tmp_path / "work"))
  for model_name in ("baseline", "vibe"):
    assert all(0.0 <= results[model_name][m] <= 1.0 for m in ("acc", "asr", "ra"))
  test_images = datasets.load_dataset("digits", seed=config.dataset.split_seed).test_images
  inputs = (test_images.astype(np.float32) / 255.0 - 0.5) / 0.5  # digits: mean = std = 0.5
  expected = _torch_features(model, inputs)
  expected /= np.linalg.norm(expected, axis=1, keepdims=True)
  with np.load(tmp_path / "work" / "features.npz") as cached:
    np.testing.assert_allclose(cached["test_features"], expected, rtol=0, atol=1e-4)
