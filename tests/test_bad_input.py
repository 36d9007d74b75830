"""Bad input fails early with a message that names the config field."""

import pytest

from configs import cifar10_badnets, digits_badnets
from vibe_jax import experiment, run


def tiny(config):
  config.train.steps = 20
  config.baseline.steps = 20
  config.estep.period = 10
  config.train.batch_size = 64
  return config


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("variant", "zz", r"variant 'zz' \(config field variant\); known: a, f"),
        ("dataset.name", "mnist", r"known: .*digits"),
        ("attack.name", "trojannn", r"known: .*badnets"),
        ("features.extractor", "clip", r"features\.extractor"),
        ("attack.rate", 1.2, r"attack\.rate=1\.2 must lie in \(0, 1\)"),
        ("attack.rate", 0.0, r"attack\.rate"),
        ("attack.target", 10, r"attack\.target=10 must lie in \[0, 10\)"),
        ("train.batch_size", 5000, r"train\.batch_size=5000 exceeds"),
        ("estep.period", 0, r"estep\.period=0 must be positive"),
    ],
)
def test_config_errors(tmp_path, field, value, match):
  config = tiny(digits_badnets.get_config())
  *path, last = field.split(".")
  node = config
  for part in path:
    node = node[part]
  node[last] = value
  with pytest.raises(ValueError, match=match):
    run.train_and_evaluate(config, str(tmp_path))


def test_missing_data_dir(tmp_path):
  config = tiny(cifar10_badnets.get_config())
  config.dataset.data_dir = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="dataset.data_dir"):
    run.train_and_evaluate(config, str(tmp_path))


def test_nan_loss_stops_the_run(tmp_path):
  config = tiny(digits_badnets.get_config())
  config.baseline.enabled = False
  config.train.lr = float("nan")
  with pytest.raises(FloatingPointError, match=r"loss became nan .*train\.lr"):
    run.train_and_evaluate(config, str(tmp_path))


def test_attack_that_cannot_load_per_host_is_a_clear_error():
  """Before any process joins: label_consistent poisons from the whole training set."""
  from configs import digits_label_consistent

  config = digits_label_consistent.get_config()
  config.parallel.coordinator_address = "127.0.0.1:1234"
  config.parallel.num_processes = 2
  with pytest.raises(ValueError, match=r"set parallel\.per_host_loading=False"):
    experiment.validate_config(config)
  config.parallel.per_host_loading = False
  experiment.validate_config(config)


def test_heartbeat_timeout_reaches_jax_and_must_be_positive(monkeypatch):
  from vibe_jax import parallel

  joined = []
  monkeypatch.setattr(parallel.jax.distributed, "is_initialized", lambda: False)
  monkeypatch.setattr(
      parallel.jax.distributed, "initialize", lambda *args, **kwargs: joined.append(kwargs)
  )
  monkeypatch.setattr(parallel.jax.config, "update", lambda *args: None)
  config = digits_badnets.get_config().parallel
  config.coordinator_address = "127.0.0.1:1234"
  config.num_processes = 2
  config.heartbeat_timeout_s = 0
  with pytest.raises(ValueError, match=r"parallel\.heartbeat_timeout_s=0 must be positive"):
    parallel.initialize_distributed(config)
  assert not joined
  config.heartbeat_timeout_s = 600
  parallel.initialize_distributed(config)
  assert joined == [{"num_processes": 2, "process_id": 0, "heartbeat_timeout_seconds": 600}]
