"""Fashion-MNIST in memory with NumPy: the input pipeline without TensorFlow.

Chosen with ``config.data_pipeline = "arrays"`` (see ``experiments.datasets``)
on machines without TensorFlow, such as a GPU machine. It reads the IDX files
of the Debian package ``dataset-fashion-mnist`` (or ``$FASHION_MNIST_DIR``)
and gives what the tf.data pipeline gives when it reads those files:

* the same examples: the validation split (``config.validation_size``,
  ``validation_seed``), then the first ``train_subset`` of the remaining
  training examples in stored order, the first ``test_subset`` test ones;
* the same label noise: the same replaced labels and random classes, drawn
  per (seed, example index) with TensorFlow's stateless generator
  reimplemented in NumPy (``experiments.tf_random``);
* the same normalised float32 images and evaluation batches (zero-padded,
  with a ``mask``).

What differs is the order of the training examples within an epoch (a NumPy
permutation seeded by ``(seed, epoch)`` instead of tf.data's shuffle buffer)
and the random draws of augmentation (pad-and-crop, flip and Cutout, seeded
by ``(seed, epoch, step)``): a run with this pipeline is another draw of the
same experiment, not a digit-for-digit copy of a tf.data run. As there, the
batches of an epoch depend only on the config and the epoch, so a run
resumes mid-epoch (``start_step``). A prepared tensorflow-datasets copy of
Fashion-MNIST stores its examples in another order; only the IDX-file source
of the tf.data pipeline matches this one.
"""

import dataclasses
import os
from typing import Iterator, Optional

import numpy as np

from experiments import datasets
from experiments import tf_random


@dataclasses.dataclass(frozen=True)
class Split:
  """One split in its stored order: uint8 images ``[N, H, W, C]``, labels."""
  images: np.ndarray
  labels: np.ndarray  # int64 [N]
  num_examples: int
  source: str  # "arrays:/path"


def load_split(config, split: str) -> Split:
  """Loads ``split`` ("train", "validation" or "test") of Fashion-MNIST, as
  ``experiments.input_pipeline.load_split`` does."""
  if split not in ("train", "validation", "test"):
    raise ValueError(f"split must be 'train', 'validation' or 'test', got {split!r}.")
  if config.dataset != "fashion_mnist":
    raise ValueError(f"config.data_pipeline='arrays' reads only fashion_mnist, "
                     f"not {config.dataset!r}.")
  image_file, label_file = datasets.fashion_mnist_files(
      "test" if split == "test" else "train")
  if not (os.path.exists(image_file) and os.path.exists(label_file)):
    raise datasets.DatasetNotFoundError(
        f"No Fashion-MNIST IDX files at {os.path.dirname(image_file)}: "
        "`apt-get install dataset-fashion-mnist`, or set $FASHION_MNIST_DIR to "
        "a directory holding " + ", ".join(
            name for names in datasets.FASHION_MNIST_FILES.values() for name in names) + ".")
  images = datasets.read_idx(image_file)[..., np.newaxis]
  labels = datasets.read_idx(label_file).astype(np.int64)
  if split != "test" and config.validation_size:
    chosen = np.zeros(len(labels), bool)
    chosen[datasets.validation_indices(len(labels), config.validation_size,
                                       config.validation_seed)] = True
    keep = chosen if split == "validation" else ~chosen
    images, labels = images[keep], labels[keep]
  elif split == "validation":
    raise ValueError("The validation split needs config.validation_size > 0.")
  subset = {"train": config.train_subset, "test": config.test_subset}.get(split)
  if subset:
    images, labels = images[:subset], labels[:subset]
  return Split(images, labels, len(labels),
               f"arrays:{os.path.dirname(image_file)}")


def noisy_labels(labels: np.ndarray, fraction: float, num_classes: int,
                 seed: int) -> np.ndarray:
  """``input_pipeline.noisy_label`` for the examples at indices 0, 1, ...

  Each example's label is replaced, with probability ``fraction``, by a
  uniform class; both draws come from the stream of (seed, index).
  """
  stream = np.array([seed, datasets.LABEL_NOISE_STREAM], np.int64)
  example_seeds = tf_random.fold_in(stream, np.arange(len(labels), dtype=np.int64))
  replace_seed, class_seed = np.moveaxis(tf_random.split(example_seeds, 2), -2, 0)
  replace = tf_random.uniform_float32(replace_seed) < np.float32(fraction)
  random_class = tf_random.uniform_int64(class_seed, num_classes)
  return np.where(replace, random_class, labels)


def normalize(images: np.ndarray, info: datasets.DatasetInfo) -> np.ndarray:
  """uint8 images -> float32 standardised per channel, in the tf.data
  pipeline's order of float32 operations."""
  scaled = images.astype(np.float32) / np.float32(255.0)
  return (scaled - np.asarray(info.mean, np.float32)) / np.asarray(info.std, np.float32)


def _augmentation_draws(rng: np.random.Generator, count: int,
                        image_shape: tuple[int, ...], padding: int) -> dict:
  """Per example of a whole batch: crop offsets, flips and Cutout centres
  (drawn for the whole batch, so that a process's rows match it)."""
  height, width = image_shape[:2]
  return {"crop": rng.integers(0, 2 * padding + 1, (count, 2)),
          "flip": rng.random(count) < 0.5,
          "centre": np.stack([rng.integers(0, height, count),
                              rng.integers(0, width, count)], axis=1)}


def _augment(images: np.ndarray, aug, draws: dict) -> np.ndarray:
  """Pad-and-random-crop, then horizontal flip, of uint8 images."""
  count, height, width = images.shape[:3]
  if aug.crop_padding:
    p = aug.crop_padding
    padded = np.pad(images, [(0, 0), (p, p), (p, p), (0, 0)])
    rows = draws["crop"][:, 0, None] + np.arange(height)
    cols = draws["crop"][:, 1, None] + np.arange(width)
    images = padded[np.arange(count)[:, None, None], rows[:, :, None],
                    cols[:, None, :]]
  if aug.random_flip:
    images = np.where(draws["flip"][:, None, None, None], images[:, :, ::-1], images)
  return images


def _cutout(images: np.ndarray, size: int, centres: np.ndarray) -> np.ndarray:
  """Zeroes a size x size square at each centre, clipped at the borders
  (after normalisation, as the tf.data pipeline does)."""
  height, width = images.shape[1:3]
  cy, cx = (centres[:, i, None, None] for i in range(2))
  ys, xs = np.arange(height)[None, :, None], np.arange(width)[None, None, :]
  inside = ((ys >= cy - size // 2) & (ys < cy + size // 2)
            & (xs >= cx - size // 2) & (xs < cx + size // 2))
  return images * (~inside)[..., None].astype(images.dtype)


def train_batches(split: Split, config, epoch: int, start_step: int = 0,
                  rows: Optional[slice] = None) -> Iterator[dict[str, np.ndarray]]:
  """Yields the batches of ``epoch`` from step ``start_step`` on.

  Batches are ``{'image': float32[B, H, W, C], 'label': int32[B]}``; with
  ``rows`` (a process's share in data-parallel training) only those rows of
  each batch.
  """
  info = datasets.DATASETS[config.dataset]
  if info.imagenet_style:
    raise ValueError("config.data_pipeline='arrays' has no ImageNet augmentation.")
  labels = split.labels
  if config.label_noise:
    labels = noisy_labels(labels, config.label_noise, info.num_classes, config.seed)
  order = np.random.default_rng([config.seed, epoch]).permutation(split.num_examples)
  rows = rows or slice(0, config.batch_size)
  aug = config.augment
  for step in range(start_step, datasets.steps_per_epoch(split.num_examples,
                                                         config.batch_size)):
    chosen = order[step * config.batch_size:(step + 1) * config.batch_size][rows]
    draws = _augmentation_draws(np.random.default_rng([config.seed, epoch, step]),
                                config.batch_size, info.image_shape, aug.crop_padding)
    draws = {name: value[rows] for name, value in draws.items()}
    images = normalize(_augment(split.images[chosen], aug, draws), info)
    if aug.cutout_size:
      images = _cutout(images, aug.cutout_size, draws["centre"])
    yield {"image": images, "label": labels[chosen].astype(np.int32)}


def eval_batches(split: Split, config,
                 rows: Optional[slice] = None) -> Iterator[dict[str, np.ndarray]]:
  """Yields full-size evaluation batches; the last one is zero-padded.

  Each batch has a boolean ``'mask'`` marking the real examples. With
  ``rows`` only those rows of each padded batch are yielded.
  """
  info = datasets.DATASETS[config.dataset]
  size = config.eval_batch_size
  rows = rows or slice(None)
  for start in range(0, split.num_examples, size):
    images = normalize(split.images[start:start + size], info)
    labels = split.labels[start:start + size].astype(np.int32)
    count = len(labels)
    batch = {"image": np.concatenate([images, np.zeros((size - count,) + images.shape[1:],
                                                        np.float32)]),
             "label": np.concatenate([labels, np.zeros(size - count, np.int32)]),
             "mask": np.arange(size) < count}
    yield {name: value[rows] for name, value in batch.items()}
