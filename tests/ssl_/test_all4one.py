"""All4One (vibe_jax/ssl/all4one.py): each loss term against a PyTorch transcription of
solo-learn's formulas, the queue, the momentum schedule, the optimiser's parameter groups,
the training loop. (Pretraining All4One on digits: test_pretrain.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import common
from helpers.tiny import TinyBackbone
from vibe_jax.ssl import all4one, augment

torch = pytest.importorskip("torch")
F = torch.nn.functional

B, D, K = 6, 16, all4one.NUM_NEIGHBOURS


def _t(x):
  return torch.from_numpy(np.asarray(x, np.float64))


# --- PyTorch transcriptions of solo-learn's All4One (written from its formulas) -------------


def _torch_nnclr(nn, p, temperature=0.1):
  nn, p = F.normalize(nn, dim=-1), F.normalize(p, dim=-1)
  logits = nn @ p.T / temperature
  return F.cross_entropy(logits, torch.arange(p.size(0)))


def _torch_off_diagonal(x):
  n = x.shape[0]
  return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def _torch_feature_loss(mz1, mz2, z1, z2):
  """solo-learn's "feature dimension task", including its scale 10."""
  c1 = F.normalize(mz1, dim=0).T @ F.normalize(z2, dim=0)
  c2 = F.normalize(mz2, dim=0).T @ F.normalize(z1, dim=0)
  on = (
      (torch.diagonal(c1).add(-1).pow(2).mean() + torch.diagonal(c2).add(-1).pow(2).mean()) * 0.5
  ).sqrt()
  off = (
      (_torch_off_diagonal(c1).pow(2).mean() + _torch_off_diagonal(c2).pow(2).mean()) * 0.5
  ).sqrt()
  return (0.5 * on + 0.5 * off) * 10


def _torch_pos_enc(x):
  """Summer(PositionalEncodingPermute1D(5)) on (batch, 5, dim): a 1-D sinusoid along the
  feature axis whose 5 channels are the set positions."""
  tensor = x.permute(0, 2, 1)  # (batch, dim, 5)
  batch, length, orig_ch = tensor.shape
  channels = int(np.ceil(orig_ch / 2) * 2)
  inv_freq = 1.0 / (10000 ** (torch.arange(0, channels, 2).double() / channels))
  sin_inp = torch.einsum("i,j->ij", torch.arange(length).double(), inv_freq)
  emb = torch.flatten(torch.stack((sin_inp.sin(), sin_inp.cos()), dim=-1), -2, -1)
  penc = emb[None, :, :orig_ch].repeat(batch, 1, 1).permute(0, 2, 1)
  return x + penc


def _torch_all4one_loss(z, p, p2, mz, nn, encoder, temperature):
  """solo-learn's training_step from the heads' outputs on: returns (total, att, nnclr,
  feature)."""
  (z1, z2), (p1, p2_), (q1, q2), (mz1, mz2), (nn1, nn2) = z, p, p2, mz, nn
  trans1, trans2 = _torch_pos_enc(nn1), _torch_pos_enc(nn2)
  strange1 = _torch_pos_enc(torch.cat((q1.unsqueeze(1), nn1), 1)[:, :5, :])
  strange2 = _torch_pos_enc(torch.cat((q2.unsqueeze(1), nn2), 1)[:, :5, :])
  feature = _torch_feature_loss(mz1, mz2, z1, z2)
  rich1, rich2 = encoder(trans1)[:, 0, :], encoder(trans2)[:, 0, :]
  s1, s2 = encoder(strange1)[:, 0, :], encoder(strange2)[:, 0, :]
  att = _torch_nnclr(rich1, s2) / 2 + _torch_nnclr(rich2, s1) / 2
  nnclr = (
      _torch_nnclr(nn1[:, 0, :], p2_, temperature) / 2
      + _torch_nnclr(nn2[:, 0, :], p1, temperature) / 2
  )
  return 0.5 * att + 0.5 * nnclr + 0.5 * feature, att, nnclr, feature


def _torch_encoder_from(encoder):
  """torch.nn.TransformerEncoder as solo-learn builds it, holding `encoder`'s weights."""
  layer = torch.nn.TransformerEncoderLayer(
      d_model=D, nhead=8, dim_feedforward=2 * D, batch_first=True, dropout=0.1
  )
  model = torch.nn.TransformerEncoder(layer, num_layers=3, enable_nested_tensor=False).double()
  with torch.no_grad():
    for ours, theirs in zip(encoder.layers, model.layers):
      theirs.self_attn.in_proj_weight.copy_(_t(ours.in_proj.kernel[...]).T)
      theirs.self_attn.in_proj_bias.copy_(_t(ours.in_proj.bias[...]))
      theirs.self_attn.out_proj.weight.copy_(_t(ours.out_proj.kernel[...]).T)
      theirs.self_attn.out_proj.bias.copy_(_t(ours.out_proj.bias[...]))
      for name in ("linear1", "linear2"):
        getattr(theirs, name).weight.copy_(_t(getattr(ours, name).kernel[...]).T)
        getattr(theirs, name).bias.copy_(_t(getattr(ours, name).bias[...]))
      for name in ("norm1", "norm2"):
        getattr(theirs, name).weight.copy_(_t(getattr(ours, name).scale[...]))
        getattr(theirs, name).bias.copy_(_t(getattr(ours, name).bias[...]))
  return model.eval()  # eval: no dropout, for an exact comparison


@pytest.fixture(scope="module")
def encoder():
  encoder = all4one.TransformerEncoder(D, seed=3)
  # Different layers, so a mix-up of their order would show.
  for i, layer in enumerate(encoder.layers):
    layer.in_proj.bias[...] = jnp.full_like(layer.in_proj.bias[...], 0.1 * i)
    layer.norm2.scale[...] = jnp.full_like(layer.norm2.scale[...], 1.0 + 0.5 * i)
  return encoder


def _random(seed, *shape):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# --- loss terms -----------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.1, 0.2, 1.0])
def test_nnclr_loss_matches_torch(temperature):
  nn, p = _random(0, B, D), _random(1, B, D)
  got = all4one.nnclr_loss(jnp.asarray(nn), jnp.asarray(p), temperature)
  expected = _torch_nnclr(_t(nn), _t(p), temperature)
  np.testing.assert_allclose(float(got), float(expected), rtol=1e-5)


def test_redundancy_loss_matches_torch():
  mz1, mz2 = F.normalize(_t(_random(2, B, D)), dim=-1), F.normalize(_t(_random(3, B, D)), dim=-1)
  z1, z2 = _random(4, B, D), _random(5, B, D)
  got = all4one.REDUNDANCY_SCALE * all4one.redundancy_loss(
      (jnp.asarray(mz1.numpy(), jnp.float32), jnp.asarray(mz2.numpy(), jnp.float32)),
      (jnp.asarray(z1), jnp.asarray(z2)),
  )
  expected = _torch_feature_loss(mz1, mz2, _t(z1), _t(z2))
  np.testing.assert_allclose(float(got), float(expected), rtol=1e-5)
  # At the optimum (the same unit columns twice, orthogonal) it vanishes.
  eye = jnp.eye(D)
  np.testing.assert_allclose(all4one.redundancy_loss((eye, eye), (eye, eye)), 0.0, atol=1e-6)


def test_positional_encoding_matches_solo_learn():
  zeros = torch.zeros(2, K, D, dtype=torch.float64)
  expected = _torch_pos_enc(zeros)[0].numpy()
  np.testing.assert_allclose(all4one.positional_encoding(K, D), expected, atol=1e-6)
  assert all4one.positional_encoding(K, D).shape == (K, D)


def test_transformer_matches_torch_encoder(encoder):
  x = _random(6, B, K, D)
  got = encoder(jnp.asarray(x))  # no key: no dropout
  with torch.no_grad():
    expected = _torch_encoder_from(encoder)(_t(x)).numpy()
  np.testing.assert_allclose(got, expected, atol=2e-5)


def test_transformer_dropout_is_keyed(encoder):
  x = jnp.asarray(_random(7, B, K, D))
  first = encoder(x, jax.random.key(0))
  np.testing.assert_array_equal(first, encoder(x, jax.random.key(0)))
  assert not np.allclose(first, encoder(x, jax.random.key(1)))
  assert not np.allclose(first, encoder(x))
  # The step encodes its 4 sets in one vmapped call: set i with key i, as 4 calls would.
  sets, keys = jnp.asarray(_random(8, 4, B, K, D)), jax.random.split(jax.random.key(2), 4)
  together = jax.vmap(encoder)(sets, keys)
  for i in range(4):
    np.testing.assert_allclose(together[i], encoder(sets[i], keys[i]), rtol=1e-5, atol=1e-6)


def test_loss_terms_and_weights_match_torch(encoder):
  """The whole objective (centroid term through the transformer, NNCLR term, redundancy
  term, weights 0.5 / 0.5 / 0.5 x 10) against solo-learn's training_step transcribed."""
  names = ["z1", "z2", "p1", "p2", "q1", "q2"]
  arrays = {name: _random(10 + i, B, D) for i, name in enumerate(names)}
  mz = [F.normalize(_t(_random(20 + i, B, D)), dim=-1).numpy().astype(np.float32) for i in (0, 1)]
  nn = [
      F.normalize(_t(_random(30 + i, B, K, D)), dim=-1).numpy().astype(np.float32) for i in (0, 1)
  ]
  pair = lambda a, b, f: (f(arrays[a]), f(arrays[b]))
  got = all4one.loss_terms(
      z=pair("z1", "z2", jnp.asarray),
      p=pair("p1", "p2", jnp.asarray),
      p2=pair("q1", "q2", jnp.asarray),
      momentum_z=tuple(map(jnp.asarray, mz)),
      neighbours=tuple(map(jnp.asarray, nn)),
      transformer=jax.vmap(encoder),
      temperature=0.2,
  )
  with torch.no_grad():
    total, att, nnclr, feature = _torch_all4one_loss(
        pair("z1", "z2", _t),
        pair("p1", "p2", _t),
        pair("q1", "q2", _t),
        tuple(map(_t, mz)),
        tuple(map(_t, nn)),
        _torch_encoder_from(encoder),
        temperature=0.2,
    )
  for key, value in [("centroid", att), ("nnclr", nnclr), ("redundancy", feature), ("loss", total)]:
    np.testing.assert_allclose(float(got[key]), float(value), rtol=2e-5, err_msg=key)


# --- queue, neighbours, momentum ------------------------------------------------------------


def test_nearest_neighbours_match_torch_topk():
  z = F.normalize(_t(_random(40, B, D)), dim=-1)
  queue = F.normalize(_t(_random(41, 32, D)), dim=-1)
  _, idx = (z @ queue.T).topk(K, dim=1)
  got = all4one.nearest_neighbours(jnp.asarray(z.numpy()), jnp.asarray(queue.numpy()))
  np.testing.assert_allclose(got, queue[idx].numpy(), atol=1e-6)
  assert got.shape == (B, K, D)


def test_queue_is_fifo():
  queue, pointer = jnp.zeros((6, 2)), jnp.asarray(0)
  batches = [jnp.full((2, 2), float(i + 1)) for i in range(4)]
  enqueue = jax.jit(all4one.enqueue)
  for batch in batches[:3]:
    queue, pointer = enqueue(queue, pointer, batch)
  np.testing.assert_array_equal(queue[:, 0], [1, 1, 2, 2, 3, 3])
  assert int(pointer) == 0  # wrapped round
  queue, pointer = enqueue(queue, pointer, batches[3])  # overwrites the oldest batch
  np.testing.assert_array_equal(queue[:, 0], [4, 4, 2, 2, 3, 3])
  assert int(pointer) == 2


def test_momentum_tau_schedule():
  tau = lambda step: float(all4one.momentum_tau(step, 100, 0.99, 1.0))
  assert tau(0) == pytest.approx(0.99) and tau(100) == pytest.approx(1.0)
  assert tau(50) == pytest.approx(0.995)
  values = [tau(step) for step in range(101)]
  assert all(a <= b for a, b in zip(values, values[1:]))  # non-decreasing
  # solo-learn's MomentumUpdater.update_tau, written out.
  expected = 1.0 - (1.0 - 0.99) * (math.cos(math.pi * 30 / 100) + 1) / 2
  assert tau(30) == pytest.approx(expected, rel=1e-7)


def test_ema_update_and_momentum_copy():
  ssl = _tiny_ssl()
  model = all4one.build_model(TinyBackbone(nnx.Rngs(0)), ssl, 1)
  momentum = model.momentum_encoder()
  online = all4one._online_encoder_params(nnx.state(model, nnx.Param))
  momentum_params = nnx.state(momentum, nnx.Param)
  for a, b in zip(jax.tree.leaves(online), jax.tree.leaves(momentum_params)):
    np.testing.assert_array_equal(a, b)  # starts as a copy
  shifted = jax.tree.map(lambda x: x + 1.0, online)
  updated = all4one.ema_update(momentum_params, shifted, jnp.asarray(0.75))
  for m, o, u in zip(*map(jax.tree.leaves, (momentum_params, shifted, updated))):
    np.testing.assert_allclose(u, 0.75 * m + 0.25 * o, rtol=1e-6)


def test_transformer_has_its_own_learning_rate():
  """solo-learn's parameter group {"params": transformer, "lr": 0.1}: same schedule, own
  peak learning rate."""
  ssl = _tiny_ssl(
      optimizer="sgd", momentum=0.0, weight_decay=0.0, lr=0.5, transformer_lr=0.1, warmup_steps=0
  )
  params = {"transformer": {"w": jnp.ones((2, 2))}, "backbone": {"w": jnp.ones((2, 2))}}
  grads = jax.tree.map(jnp.ones_like, params)
  optimizer = all4one.make_optimizer(ssl)
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  np.testing.assert_allclose(updates["transformer"]["w"], -0.1)
  np.testing.assert_allclose(updates["backbone"]["w"], -0.5)


# --- training -------------------------------------------------------------------------------


def _tiny_ssl(**overrides):
  ssl = common.base_config().ssl
  ssl.update(
      {
          "method": "all4one",
          "steps": 6,
          "batch_size": 8,
          "optimizer": "lars",
          "lr": 0.3,
          "warmup_steps": 0,
          "projector_hidden_dim": 16,
          "projector_output_dim": 8,
          "predictor_hidden_dim": 16,
          "queue_size": 16,
          "log_every": 3,
          **overrides,
      }
  )
  return ssl


def _fit_tiny(host_loop):
  data = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
  model = all4one.build_model(TinyBackbone(nnx.Rngs(0)), _tiny_ssl(), 1)
  return all4one.fit(
      model,
      data,
      _tiny_ssl(),
      augment_config=augment.AugmentConfig(jitter_prob=0.0),  # jitter: most of the compile
      mean=(0.5,) * 3,
      std=(0.25,) * 3,
      seed=0,
      host_loop=host_loop,
  )


@pytest.mark.slow
def test_fit_logs_the_terms_and_tau_is_deterministic_and_both_loops_agree():
  """The host loop's records; the same seed gives the same records and weights; the
  accelerator path (one fori_loop per chunk, queue and momentum network in the carry) takes
  the same steps."""
  model, history = _fit_tiny(host_loop=True)
  assert [record["step"] for record in history] == [3, 6]
  for record in history:
    assert {"loss", "centroid", "nnclr", "redundancy", "tau", "lr"} <= set(record)
    assert all(math.isfinite(value) for value in record.values())
    weighted = 0.5 * (record["centroid"] + record["nnclr"] + record["redundancy"])
    assert record["loss"] == pytest.approx(weighted, rel=1e-5)
  # Mean tau over steps 0-2: the cosine schedule from 0.99 over 6 steps.
  expected_tau = np.mean([float(all4one.momentum_tau(s, 6, 0.99, 1.0)) for s in range(3)])
  assert history[0]["tau"] == pytest.approx(expected_tau, rel=1e-6)
  assert isinstance(model, all4one.All4OneModel)
  again, repeated = _fit_tiny(host_loop=True)  # a pure function of the seed
  assert repeated == history
  for a, b in zip(jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(again))):
    np.testing.assert_array_equal(a, b)
  _, compiled = _fit_tiny(host_loop=False)
  np.testing.assert_allclose([r["loss"] for r in compiled], [r["loss"] for r in history], rtol=2e-3)
