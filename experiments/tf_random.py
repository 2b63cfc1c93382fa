"""TensorFlow's stateless random numbers in NumPy, vectorised over seeds.

The tf.data pipeline draws its label noise with TensorFlow's stateless ops
(``experiments.input_pipeline.noisy_label``); ``experiments.array_pipeline``
needs the same numbers without TensorFlow. This module computes them:

* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
  3", SC 2011), the algorithm TensorFlow's ``"auto_select"`` runs on CPU and
  GPU;
* the seed scrambling of ``StatelessRandomGetKeyCounter``: the two int64
  seeds, as four uint32 words, are hashed by one Philox call under a fixed
  key into the key (words 0, 1) and the counter's upper half (words 2, 3);
* the conversions of ``tf.random.stateless_uniform``: float32 in [0, 1)
  from the low 23 bits of a word, int64 from two words (low word first),
  reduced modulo the range for ``[0, maxval)``;
* ``tf.random.experimental.stateless_fold_in`` and ``stateless_split``.

Every ``seed`` argument is an int64 array of shape ``[..., 2]``; results
have its leading shape. ``tests/test_array_pipeline.py`` checks each
function against TensorFlow.
"""

import numpy as np

_MULTIPLIERS = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))
_KEY_INCREMENTS = (np.uint64(0x9E3779B9), np.uint64(0xBB67AE85))
_SEED_SCRAMBLE_KEY = (0x3EC8F720, 0x02461E29)
_LOW = np.uint64(0xFFFFFFFF)
_32 = np.uint64(32)


def philox(counter: list[np.ndarray], key: list[np.ndarray]) -> list[np.ndarray]:
  """Philox4x32-10: four uint32 words from a 4-word counter and 2-word key."""
  c = [np.asarray(word, np.uint64) for word in counter]
  k = [np.asarray(word, np.uint64) for word in key]
  for _ in range(10):
    product0 = _MULTIPLIERS[0] * c[0]
    product1 = _MULTIPLIERS[1] * c[2]
    c = [(product1 >> _32) ^ c[1] ^ k[0], product1 & _LOW,
         (product0 >> _32) ^ c[3] ^ k[1], product0 & _LOW]
    k = [(k[0] + _KEY_INCREMENTS[0]) & _LOW, (k[1] + _KEY_INCREMENTS[1]) & _LOW]
  return [word.astype(np.uint32) for word in c]


def _words(seed: np.ndarray, blocks: int) -> np.ndarray:
  """The first ``4 * blocks`` uint32 outputs of the stream of ``seed``."""
  seed = np.asarray(seed, np.int64).view(np.uint64)
  s0, s1 = seed[..., 0], seed[..., 1]
  mixed = philox([s0 & _LOW, s0 >> _32, s1 & _LOW, s1 >> _32],
                 [np.uint64(word) for word in _SEED_SCRAMBLE_KEY])
  key, high = mixed[:2], mixed[2:]
  zero = np.zeros_like(s0)
  # The counter's low word counts blocks; fewer than 2**32 never carry.
  out = [philox([zero + block, zero, *high], key) for block in range(blocks)]
  return np.stack([word for block in out for word in block], axis=-1)


def _int64(low: np.ndarray, high: np.ndarray) -> np.ndarray:
  return (low.astype(np.uint64) | (high.astype(np.uint64) << _32)).view(np.int64)


def uniform_full_int64(seed: np.ndarray, count: int) -> np.ndarray:
  """``stateless_uniform([count], seed, dtype=int64, minval=None, maxval=None)``."""
  words = _words(seed, (2 * count + 3) // 4)
  return _int64(words[..., 0:2 * count:2], words[..., 1:2 * count:2])


def uniform_float32(seed: np.ndarray) -> np.ndarray:
  """``stateless_uniform([], seed)``: float32 in [0, 1)."""
  word = _words(seed, 1)[..., 0]
  return ((word & np.uint32(0x7FFFFF)) | np.uint32(0x3F800000)).view(
      np.float32) - np.float32(1.0)


def uniform_int64(seed: np.ndarray, maxval: int) -> np.ndarray:
  """``stateless_uniform([], seed, 0, maxval, dtype=int64)``."""
  words = _words(seed, 1)
  bits = _int64(words[..., 0], words[..., 1]).view(np.uint64)
  return (bits % np.uint64(maxval)).astype(np.int64)


def fold_in(seed: np.ndarray, data: np.ndarray) -> np.ndarray:
  """``stateless_fold_in(seed, data)`` for int64 ``data`` (broadcast)."""
  first = uniform_full_int64(seed, 1)[..., 0]
  data = np.asarray(data, np.int64)
  first, data = np.broadcast_arrays(first, data)
  return np.stack([first, data], axis=-1)


def split(seed: np.ndarray, num: int = 2) -> np.ndarray:
  """``stateless_split(seed, num)``: ``num`` new seeds, shape ``[..., num, 2]``."""
  values = uniform_full_int64(seed, 2 * num)
  return values.reshape(values.shape[:-1] + (num, 2))
