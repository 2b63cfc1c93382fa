"""Input pipeline: real Fashion-MNIST files, augmentation determinism, resume."""

import numpy as np
import pytest
import tensorflow as tf

from experiments import input_pipeline
import experiment_helpers as testing

FMNIST = input_pipeline.DATASETS["fashion_mnist"]


def _batches(config, epoch=0, start_step=0):
  split = input_pipeline.load_split(config, "train")
  return list(input_pipeline.train_batches(split, config, epoch, start_step))


def _assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["label"], y["label"])


@testing.requires_fashion_mnist
def test_debian_idx_files_hold_the_real_dataset():
  split = input_pipeline.load_split(testing.tiny_config(train_subset=0),
                                    "train")
  assert split.num_examples == 60_000
  labels = np.concatenate([b["label"] for b in
                           split.dataset.batch(10_000).as_numpy_iterator()])
  np.testing.assert_array_equal(np.bincount(labels), [6_000] * 10)


@testing.requires_fashion_mnist
def test_source_has_the_tfds_element_spec():
  split = input_pipeline.load_split(testing.tiny_config(), "test")
  spec = split.dataset.element_spec
  assert spec["image"] == tf.TensorSpec([28, 28, 1], tf.uint8)
  assert spec["label"] == tf.TensorSpec([], tf.int64)
  assert split.num_examples == 500


@testing.requires_fashion_mnist
def test_train_batches_shapes_and_value_ranges():
  config = testing.tiny_config()
  batches = _batches(config)
  assert len(batches) == 512 // 64
  low = (0 - FMNIST.mean[0]) / FMNIST.std[0]
  high = (1 - FMNIST.mean[0]) / FMNIST.std[0]
  for batch in batches:
    assert batch["image"].shape == (64, 28, 28, 1)
    assert batch["image"].dtype == np.float32
    assert batch["label"].dtype == np.int32
    assert low - 1e-5 <= batch["image"].min() and batch["image"].max() <= high + 1e-5
    assert 0 <= batch["label"].min() and batch["label"].max() < 10


@testing.requires_fashion_mnist
def test_augmentation_is_deterministic_under_seed_and_varies_with_epoch():
  config = testing.tiny_config(train_subset=128)
  _assert_same_batches(_batches(config, epoch=1), _batches(config, epoch=1))
  other_epoch = _batches(config, epoch=2)
  other_seed = _batches(testing.tiny_config(train_subset=128, seed=1), epoch=1)
  for other in (other_epoch, other_seed):
    assert not np.array_equal(other[0]["image"], _batches(config, 1)[0]["image"])


@testing.requires_fashion_mnist
def test_an_epoch_without_augmentation_is_a_permutation_of_the_data():
  config = testing.tiny_config()
  config.augment.crop_padding = 0
  config.augment.random_flip = False
  images = np.concatenate([b["image"] for b in _batches(config)])
  split = input_pipeline.load_split(config, "train")
  raw = next(split.dataset.batch(512).as_numpy_iterator())["image"]
  expected = (raw / 255.0 - FMNIST.mean[0]) / FMNIST.std[0]
  order = lambda x: x[np.lexsort(x.reshape(len(x), -1).T)]
  np.testing.assert_allclose(order(images), order(expected), atol=1e-5)


@testing.requires_fashion_mnist
def test_resuming_mid_epoch_yields_the_remaining_batches():
  config = testing.tiny_config(label_noise=0.2)
  full = _batches(config, epoch=1)
  _assert_same_batches(_batches(config, epoch=1, start_step=3), full[3:])


@testing.requires_fashion_mnist
def test_eval_batches_are_padded_with_a_mask():
  config = testing.tiny_config(test_subset=260, eval_batch_size=100)
  split = input_pipeline.load_split(config, "test")
  batches = list(input_pipeline.eval_batches(split, config))
  assert [b["mask"].sum() for b in batches] == [100, 100, 60]
  assert all(b["image"].shape == (100, 28, 28, 1) for b in batches)


@pytest.mark.parametrize("dataset", ["cifar10", "imagenet2012"])
def test_missing_dataset_raises_instructions(tmp_path, dataset):
  config = testing.tiny_config(dataset=dataset, data_dir=str(tmp_path))
  with pytest.raises(input_pipeline.DatasetNotFoundError,
                     match="download_and_prepare"):
    input_pipeline.load_split(config, "train")


# Unit tests of single augmentation ops on synthetic tensors.


def test_cutout_zeroes_one_clipped_square_on_synthetic_image():
  synthetic = tf.ones([28, 28, 1])
  for i in range(20):
    out = input_pipeline._cutout(synthetic, 8, tf.constant([0, i], tf.int64))
    zeros = np.argwhere(out.numpy()[..., 0] == 0)
    assert 0 < len(zeros) <= 64
    rows, cols = np.ptp(zeros, axis=0) + 1
    assert rows * cols == len(zeros)  # a filled rectangle


def test_label_noise_is_deterministic_and_has_the_right_rate_synthetic():
  def noisy(seed):
    synthetic_labels = tf.data.Dataset.range(20_000).map(
        lambda i: input_pipeline.noisy_label(i, tf.constant(0, tf.int64), 0.3,
                                             10, seed))
    return next(synthetic_labels.batch(20_000).as_numpy_iterator())

  first, again, other_seed = noisy(0), noisy(0), noisy(1)
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other_seed)
  # A replaced label is uniform over all 10 classes: 0.3 * 9/10 change.
  assert abs(np.mean(first != 0) - 0.27) < 0.015
  assert set(np.unique(first)) == set(range(10))


def test_imagenet_preprocessing_shapes_on_synthetic_image():
  config = testing.tiny_config(dataset="imagenet2012")
  info = input_pipeline.DATASETS["imagenet2012"]
  synthetic = tf.cast(tf.random.stateless_uniform([300, 400, 3], [0, 0],
                                                  maxval=255), tf.uint8)
  seed = tf.constant([0, 1], tf.int64)
  train_image = input_pipeline._augment_imagenet(synthetic, seed, config, info)
  again = input_pipeline._augment_imagenet(synthetic, seed, config, info)
  eval_image = input_pipeline._preprocess_eval(synthetic, info)
  assert train_image.shape == eval_image.shape == (224, 224, 3)
  np.testing.assert_array_equal(train_image.numpy(), again.numpy())
