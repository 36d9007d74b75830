"""vibe_jax/safe_pickle.py: torch.save files read without torch equal torch.load's reading
(views with offsets and strides, every storage dtype, parameters, numpy inside), and a
global outside the allowed ones is refused before it runs."""

import os
import pickle

import numpy as np
import pytest

from vibe_jax import safe_pickle

torch = pytest.importorskip("torch")


def test_torch_file_equals_torch_load(tmp_path):
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  saved = {
      "transposed": base.t(),  # strides (1, 6)
      "offset_view": base[1:, 2::2],  # a storage offset and a step, sharing base's storage
      "base": base,
      "half": torch.linspace(-1, 1, 5, dtype=torch.float16),
      "bfloat16": torch.tensor([1.5, -2.25], dtype=torch.bfloat16),
      "ints": [torch.tensor([-3, 7], dtype=t) for t in (torch.int8, torch.int16, torch.int64)],
      "bool": torch.tensor([True, False]),
      "uint8": torch.tensor([0, 255], dtype=torch.uint8),
      "parameter": torch.nn.Parameter(torch.ones(2, 2)),
      "scalar": torch.tensor(3.0, dtype=torch.float64),
      "numpy": np.arange(3, dtype=np.int32),
      "numpy_scalar": np.int64(5),
      "nested": {"text": "x", "number": 1.5, "tuple": (1, None)},
  }
  path = tmp_path / "file.pt"
  torch.save(saved, path)
  ours = safe_pickle.load_torch_file(str(path))
  theirs = torch.load(path, weights_only=False)  # our own file; torch refuses numpy otherwise

  def same(a, b):
    if isinstance(b, torch.Tensor):
      expected = b.detach().float().numpy() if b.dtype == torch.bfloat16 else b.detach().numpy()
      got = np.asarray(a, np.float32) if b.dtype == torch.bfloat16 else a
      assert isinstance(a, np.ndarray) and a.shape == tuple(b.shape)
      np.testing.assert_array_equal(got, expected)
      assert b.dtype == torch.bfloat16 or a.dtype == expected.dtype
    elif isinstance(b, dict):
      assert a.keys() == b.keys()
      for key in b:
        same(a[key], b[key])
    elif isinstance(b, (list, tuple)):
      assert len(a) == len(b)
      for x, y in zip(a, b):
        same(x, y)
    else:
      np.testing.assert_array_equal(a, b)

  same(ours, theirs)


def test_refused_global_is_never_called(tmp_path):
  marker = tmp_path / "ran"

  class Payload:

    def __reduce__(self):
      return (os.mkdir, (str(marker),))

  with pytest.raises(safe_pickle.UnsafePickleError, match=r"where: pickles .*mkdir"):
    safe_pickle.loads(pickle.dumps([1, Payload()]), "where:")
  torch.save({"x": torch.zeros(1), "bad": Payload()}, tmp_path / "bad.pt")
  with pytest.raises(safe_pickle.UnsafePickleError, match="mkdir"):
    safe_pickle.load_torch_file(str(tmp_path / "bad.pt"))
  assert not marker.exists()
