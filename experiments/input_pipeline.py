"""tf.data input pipelines for CIFAR-10/100, Fashion-MNIST and ImageNet-1K.

Every split is read with tensorflow-datasets when it is prepared in ``data_dir``.
Fashion-MNIST has an offline fallback: the real IDX files of the Debian package
``dataset-fashion-mnist``, decoded into a ``tf.data.Dataset`` with the element
spec tfds gives (``{'image': uint8[28, 28, 1], 'label': int64}``) so both sources
go through the same pipeline. ``experiments.array_pipeline`` reads the same
examples without TensorFlow (``config.data_pipeline``, see
``experiments.datasets``). Missing data raises :class:`DatasetNotFoundError`
that says how to obtain it; nothing is ever synthesised here.

Determinism and resumability: each training example carries its index in the
(unshuffled) split. Shuffling is seeded by ``(seed, epoch)`` and every random
augmentation is a stateless op seeded by ``(seed, epoch, index)``, so the batch
sequence of an epoch depends only on the config and the epoch number, and
``train_batches(..., epoch, start_step)`` resumes mid-epoch by skipping the
first ``start_step * batch_size`` shuffled examples (before augmentation).
"""

import dataclasses
import os
from typing import Iterator, Optional

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

# Shared with experiments.array_pipeline (re-exported: callers use these names).
from experiments.datasets import (  # pylint: disable=g-importing-member,unused-import
    DATASETS, DEBIAN_FASHION_MNIST_DIR, DatasetInfo, DatasetNotFoundError,
    LABEL_NOISE_STREAM, fashion_mnist_files, read_idx, steps_per_epoch,
    validation_indices)


@dataclasses.dataclass(frozen=True)
class Split:
  """One split of a dataset in its stored order, before any preprocessing."""
  dataset: tf.data.Dataset  # elements {'image': uint8[H, W, C], 'label': int64}
  num_examples: int
  source: str  # human-readable origin, e.g. "tfds:/path" or "debian:/path"


# ----------------------------------------------------------------------------
# Loading.


def load_split(config, split: str) -> Split:
  """Loads ``split`` ("train", "validation" or "test") of ``config.dataset``.

  Tries tfds (prepared in ``config.data_dir``) first, then, for Fashion-MNIST
  only, the Debian IDX files. "validation" is ``config.validation_size``
  examples of the training split chosen by ``config.validation_seed``;
  "train" is the rest of the training split in stored order, of which the
  first ``config.train_subset`` are kept (``test_subset`` likewise for test).
  """
  if split not in ("train", "validation", "test"):
    raise ValueError(f"split must be 'train', 'validation' or 'test', got {split!r}.")
  info = DATASETS[config.dataset]
  tfds_split = info.test_split if split == "test" else "train"
  loaded = _load_from_tfds(info, tfds_split, config.data_dir)
  if loaded is None and config.dataset == "fashion_mnist":
    loaded = _load_debian_fashion_mnist(tfds_split)
  if loaded is None:
    raise DatasetNotFoundError(_missing_data_message(config.dataset,
                                                     config.data_dir))
  if split != "test" and config.validation_size:
    loaded = _carve_validation(loaded, config.validation_size,
                               config.validation_seed, split == "validation")
  elif split == "validation":
    raise ValueError("The validation split needs config.validation_size > 0.")
  subset = {"train": config.train_subset, "test": config.test_subset}.get(split)
  if subset:
    loaded = Split(loaded.dataset.take(subset),
                   min(subset, loaded.num_examples), loaded.source)
  if info.cache:
    loaded = dataclasses.replace(loaded, dataset=loaded.dataset.cache())
  return loaded


def _carve_validation(split: Split, size: int, seed: int,
                      validation: bool) -> Split:
  """The validation examples, or the training examples without them."""
  chosen = np.zeros(split.num_examples, bool)
  chosen[validation_indices(split.num_examples, size, seed)] = True
  keep = tf.constant(chosen if validation else ~chosen)
  dataset = split.dataset.enumerate().filter(
      lambda index, _: tf.gather(keep, index)).map(lambda _, example: example)
  count = size if validation else split.num_examples - size
  return Split(dataset, count, split.source)


def _load_from_tfds(info: DatasetInfo, split: str,
                    data_dir: Optional[str]) -> Optional[Split]:
  builder = tfds.builder(info.tfds_name, data_dir=data_dir)
  if not builder.is_prepared():
    return None
  # Files in their stored order: example indices must not change between epochs.
  dataset = builder.as_dataset(split=split, shuffle_files=False)
  dataset = dataset.map(lambda ex: {"image": ex["image"], "label": ex["label"]})
  return Split(dataset, builder.info.splits[split].num_examples,
               f"tfds:{builder.data_dir}")


def _load_debian_fashion_mnist(split: str) -> Optional[Split]:
  image_file, label_file = fashion_mnist_files(split)
  directory = os.path.dirname(image_file)
  if not (os.path.exists(image_file) and os.path.exists(label_file)):
    return None
  images = read_idx(image_file)[..., np.newaxis]  # tfds spec: uint8 [28, 28, 1]
  labels = read_idx(label_file).astype(np.int64)  # tfds spec: int64
  dataset = tf.data.Dataset.from_tensor_slices({"image": images,
                                                "label": labels})
  return Split(dataset, len(labels), f"debian:{directory}")


def _missing_data_message(dataset: str, data_dir: Optional[str]) -> str:
  where = data_dir or "~/tensorflow_datasets (or $TFDS_DATA_DIR)"
  prepare = (f"python -c \"import tensorflow_datasets as tfds; "
             f"tfds.builder('{dataset}', data_dir='{data_dir or 'DIR'}')"
             f".download_and_prepare()\"")
  if dataset == "imagenet2012":
    return (f"imagenet2012 is not prepared in {where}. Download "
            "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from "
            "https://image-net.org (registration required), put them in "
            "<data_dir>/downloads/manual/, then run: " + prepare +
            " and pass --config.data_dir=<data_dir>.")
  hint = (" Offline alternative: `apt-get install dataset-fashion-mnist` "
          f"(IDX files in {DEBIAN_FASHION_MNIST_DIR}, or set "
          "$FASHION_MNIST_DIR).") if dataset == "fashion_mnist" else ""
  return (f"{dataset} is not prepared in {where}. On a machine with internet "
          f"run: {prepare}, copy that data_dir here and pass "
          f"--config.data_dir=<data_dir>.{hint}")


# ----------------------------------------------------------------------------
# Preprocessing.


def _normalize(image: tf.Tensor, info: DatasetInfo) -> tf.Tensor:
  """uint8 or [0, 1]-float image -> float32 standardised per channel."""
  if image.dtype == tf.uint8:
    image = tf.cast(image, tf.float32) / 255.0
  return (image - tf.constant(info.mean)) / tf.constant(info.std)


def _cutout(image: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
  """Zeroes a size x size square centred at a uniform pixel, clipped at borders
  (DeVries & Taylor 2017; applied after normalisation, as in their code)."""
  height, width = image.shape[0], image.shape[1]
  y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  cy = tf.random.stateless_uniform([], y_seed, 0, height, dtype=tf.int32)
  cx = tf.random.stateless_uniform([], x_seed, 0, width, dtype=tf.int32)
  ys = tf.range(height)[:, None]
  xs = tf.range(width)[None, :]
  inside = ((ys >= cy - size // 2) & (ys < cy + size // 2) &
            (xs >= cx - size // 2) & (xs < cx + size // 2))
  return image * tf.cast(~inside, image.dtype)[..., None]


def _augment_small_image(image, seed, config, info: DatasetInfo):
  """CIFAR-style: pad-and-random-crop, horizontal flip, normalise, Cutout."""
  crop_seed, flip_seed, cutout_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  aug = config.augment
  if aug.crop_padding:
    p = aug.crop_padding
    padded = tf.pad(image, [[p, p], [p, p], [0, 0]])  # zero (black) padding
    image = tf.image.stateless_random_crop(padded, info.image_shape, crop_seed)
  if aug.random_flip:
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  image = _normalize(image, info)
  if aug.cutout_size:
    image = _cutout(image, aug.cutout_size, cutout_seed)
  return image


def _augment_imagenet(image, seed, config, info: DatasetInfo):
  """Random-resized-crop to 224 (area 8-100 %, aspect 3/4-4/3), flip, normalise."""
  crop_seed, flip_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 2))
  whole_image = tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4])
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(image), whole_image, seed=crop_seed, min_object_covered=0.1,
      aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
      max_attempts=10, use_image_if_no_bounding_boxes=True)
  image = tf.slice(image, begin, crop_size)
  image = tf.image.resize(image, info.image_shape[:2]) / 255.0
  if config.augment.random_flip:
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  return _normalize(image, info)


def _preprocess_eval(image, info: DatasetInfo):
  """Small images: normalise only. ImageNet: shorter side to 256, centre 224."""
  if not info.imagenet_style:
    return _normalize(image, info)
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = 256.0 / tf.reduce_min(shape)
  image = tf.image.resize(image, tf.cast(tf.round(shape * scale), tf.int32))
  image = tf.image.resize_with_crop_or_pad(image, *info.image_shape[:2])
  return _normalize(image / 255.0, info)


def noisy_label(index, label, fraction: float, num_classes: int, seed: int):
  """With probability ``fraction`` replaces ``label`` by a uniform class.

  Depends only on (seed, example index), so every epoch sees the same noise.
  """
  stream = tf.constant([seed, LABEL_NOISE_STREAM], tf.int64)
  example_seed = tf.random.experimental.stateless_fold_in(stream, index)
  replace_seed, class_seed = tf.unstack(
      tf.random.experimental.stateless_split(example_seed, 2))
  replace = tf.random.stateless_uniform([], replace_seed) < fraction
  random_class = tf.random.stateless_uniform(
      [], class_seed, 0, num_classes, dtype=tf.int64)
  return tf.where(replace, random_class, label)


# ----------------------------------------------------------------------------
# Batched pipelines.


def _deterministic(dataset: tf.data.Dataset) -> tf.data.Dataset:
  options = tf.data.Options()
  options.deterministic = True
  return dataset.with_options(options)


def train_batches(split: Split, config, epoch: int, start_step: int = 0,
                  rows: Optional[slice] = None) -> Iterator[dict[str, np.ndarray]]:
  """Yields the augmented batches of ``epoch`` from step ``start_step`` on.

  Batches are ``{'image': float32[B, H, W, C], 'label': int32[B]}``. With
  ``rows`` (a process's share in data-parallel training) only those rows of
  each batch are read, augmented and yielded, identical to the same rows of
  the full batch.
  """
  info = DATASETS[config.dataset]
  augment = _augment_imagenet if info.imagenet_style else _augment_small_image
  epoch_seed = tf.constant([config.seed, epoch], tf.int64)

  def attach_label_noise(index, example):
    label = noisy_label(index, example["label"], config.label_noise,
                        info.num_classes, config.seed)
    return index, {"image": example["image"], "label": label}

  def preprocess(index, example):
    seed = tf.random.experimental.stateless_fold_in(epoch_seed, index)
    return {"image": augment(example["image"], seed, config, info),
            "label": tf.cast(example["label"], tf.int32)}

  dataset = split.dataset.enumerate()
  if config.label_noise:
    dataset = dataset.map(attach_label_noise)
  dataset = dataset.shuffle(min(config.shuffle_buffer, split.num_examples),
                            seed=_shuffle_seed(config.seed, epoch),
                            reshuffle_each_iteration=False)
  dataset = dataset.skip(start_step * config.batch_size)
  # Whole batches only, so every process yields the same number of them.
  steps = steps_per_epoch(split.num_examples, config.batch_size)
  dataset = dataset.take((steps - start_step) * config.batch_size)
  rows = rows or slice(0, config.batch_size)
  if rows != slice(0, config.batch_size):
    dataset = _rows_of_each_batch(dataset, config.batch_size, rows)
  dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.batch(rows.stop - rows.start, drop_remainder=True)
  return _deterministic(dataset.prefetch(2)).as_numpy_iterator()


def _rows_of_each_batch(dataset: tf.data.Dataset, batch_size: int,
                        rows: slice) -> tf.data.Dataset:
  """Keeps positions ``rows`` of every consecutive ``batch_size`` elements."""
  def in_rows(position, _):
    row = position % batch_size
    return (row >= rows.start) & (row < rows.stop)
  return dataset.enumerate().filter(in_rows).map(lambda _, element: element)


def _shuffle_seed(seed: int, epoch: int) -> int:
  return seed * 1_000_003 + epoch  # distinct per (seed, epoch) for sane values


def eval_batches(split: Split, config,
                 rows: Optional[slice] = None) -> Iterator[dict[str, np.ndarray]]:
  """Yields full-size test batches; the last one is zero-padded.

  Each batch has a boolean ``'mask'`` marking the real examples. With ``rows``
  only those rows of each padded batch are yielded.
  """
  info = DATASETS[config.dataset]
  dataset = split.dataset.map(
      lambda ex: {"image": _preprocess_eval(ex["image"], info),
                  "label": tf.cast(ex["label"], tf.int32)},
      num_parallel_calls=tf.data.AUTOTUNE)
  dataset = _deterministic(dataset.batch(config.eval_batch_size).prefetch(2))
  rows = rows or slice(None)
  for batch in dataset.as_numpy_iterator():
    yield {name: value[rows]
           for name, value in _pad_batch(batch, config.eval_batch_size).items()}


def _pad_batch(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
  count = len(batch["label"])
  padded = {k: np.concatenate([v, np.zeros((size - count,) + v.shape[1:],
                                           v.dtype)])
            for k, v in batch.items()}
  padded["mask"] = np.arange(size) < count
  return padded
