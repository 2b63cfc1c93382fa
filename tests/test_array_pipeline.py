"""The NumPy input pipeline gives the tf.data pipeline's examples, split and
label noise, and the training program runs without TensorFlow."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from experiments import array_pipeline
from experiments import config_validation
from experiments import datasets
from experiments import input_pipeline
from experiments import tf_random
from experiments.configs import fashion_mnist_label_noise
import experiment_helpers as testing

SEEDS = [[0, -1], [3, 12345], [-7, 2**40 + 5], [2**62, -(2**62)]]


@pytest.mark.parametrize("seed", SEEDS)
def test_stateless_random_numbers_match_tensorflow(seed):
  tf_seed = tf.constant(seed, tf.int64)
  np.testing.assert_array_equal(
      tf_random.uniform_full_int64(np.array(seed), 5),
      tf.random.stateless_uniform([5], tf_seed, dtype=tf.int64, minval=None,
                                  maxval=None).numpy())
  assert tf_random.uniform_float32(np.array(seed)) == (
      tf.random.stateless_uniform([], tf_seed).numpy())
  for maxval in (10, 7, 1000):
    assert tf_random.uniform_int64(np.array(seed), maxval) == (
        tf.random.stateless_uniform([], tf_seed, 0, maxval, dtype=tf.int64).numpy())
  np.testing.assert_array_equal(
      tf_random.split(np.array(seed), 3),
      tf.random.experimental.stateless_split(tf_seed, 3).numpy())
  np.testing.assert_array_equal(
      tf_random.fold_in(np.array(seed), 41),
      tf.random.experimental.stateless_fold_in(tf_seed, tf.constant(41, tf.int64)).numpy())


def test_stateless_random_numbers_vectorise_over_seeds():
  seeds = np.array(SEEDS)
  np.testing.assert_array_equal(
      tf_random.uniform_float32(seeds),
      [tf_random.uniform_float32(np.array(seed)) for seed in SEEDS])


@pytest.mark.parametrize("seed, fraction", [(0, 0.4), (1, 0.4), (5, 0.3)])
def test_label_noise_matches_the_tf_data_pipeline(seed, fraction):
  labels = np.arange(20_000) % 10
  indices = tf.data.Dataset.range(len(labels))
  expected = indices.map(lambda i: input_pipeline.noisy_label(
      i, tf.gather(labels, i), fraction, 10, seed)).batch(len(labels))
  expected = next(iter(expected)).numpy()
  noisy = array_pipeline.noisy_labels(labels, fraction, 10, seed)
  np.testing.assert_array_equal(noisy, expected)
  changed = np.mean(noisy != labels)  # a replaced label keeps its class w.p. 1/10
  assert abs(changed - fraction * 0.9) < 0.02


def _regime_config(**overrides):
  """R2's data settings (validation split, subset, label noise)."""
  config = fashion_mnist_label_noise.get_config()
  config.update(overrides)
  return config


def _tf_examples(split):
  batches = split.dataset.batch(10_000).as_numpy_iterator()
  examples = list(batches)
  return (np.concatenate([b["image"] for b in examples]),
          np.concatenate([b["label"] for b in examples]))


@testing.requires_fashion_mnist
@pytest.mark.parametrize("name", ["train", "validation", "test"])
def test_splits_hold_the_same_examples_in_the_same_order(name):
  config = _regime_config(test_subset=3_000)
  expected = input_pipeline.load_split(config, name)
  assert expected.source.startswith("debian:")  # the IDX files, as here
  actual = array_pipeline.load_split(config, name)
  assert actual.num_examples == expected.num_examples == {
      "train": 10_000, "validation": 5_000, "test": 3_000}[name]
  images, labels = _tf_examples(expected)
  np.testing.assert_array_equal(actual.images, images)
  np.testing.assert_array_equal(actual.labels, labels)
  assert actual.images.dtype == images.dtype and actual.labels.dtype == labels.dtype


@testing.requires_fashion_mnist
def test_evaluation_batches_are_identical():
  # Same float32 operations in the same order: identical values.
  config = _regime_config(test_subset=1_100, eval_batch_size=500)
  for name in ("validation", "test"):
    expected = list(input_pipeline.eval_batches(
        input_pipeline.load_split(config, name), config, rows=slice(100, 350)))
    actual = list(array_pipeline.eval_batches(
        array_pipeline.load_split(config, name), config, rows=slice(100, 350)))
    assert len(actual) == len(expected)
    for a, b in zip(actual, expected):
      assert a.keys() == b.keys()
      for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key])


def _sorted_examples(batches):
  images = np.concatenate([b["image"] for b in batches])
  labels = np.concatenate([b["label"] for b in batches])
  order = np.lexsort(np.concatenate([images.reshape(len(images), -1),
                                     labels[:, None]], axis=1).T)
  return images[order], labels[order]


@testing.requires_fashion_mnist
def test_an_epoch_holds_the_same_noisy_examples_in_another_order():
  # 512 training examples in batches of 64: every example once per epoch.
  config = _regime_config(train_subset=512, batch_size=64, seed=2)
  tf_batches = list(input_pipeline.train_batches(
      input_pipeline.load_split(config, "train"), config, epoch=3))
  array_batches = list(array_pipeline.train_batches(
      array_pipeline.load_split(config, "train"), config, epoch=3))
  assert len(array_batches) == len(tf_batches) == 8
  for a, b in zip(array_batches[0].values(), tf_batches[0].values()):
    assert a.dtype == b.dtype and a.shape == b.shape
  images, labels = _sorted_examples(array_batches)
  expected_images, expected_labels = _sorted_examples(tf_batches)
  np.testing.assert_array_equal(images, expected_images)
  np.testing.assert_array_equal(labels, expected_labels)


@testing.requires_fashion_mnist
def test_batches_resume_mid_epoch_and_split_into_rows():
  config = _regime_config(train_subset=640, batch_size=64)
  config.augment.update(crop_padding=2, random_flip=True, cutout_size=4)
  split = array_pipeline.load_split(config, "train")
  full = list(array_pipeline.train_batches(split, config, epoch=1))
  resumed = list(array_pipeline.train_batches(split, config, epoch=1, start_step=6))
  assert len(full) == 10 and len(resumed) == 4
  for a, b in zip(resumed, full[6:]):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  rows = list(array_pipeline.train_batches(split, config, epoch=1, rows=slice(16, 48)))
  for a, b in zip(rows, full):
    np.testing.assert_array_equal(a["image"], b["image"][16:48])
  other_epoch = next(array_pipeline.train_batches(split, config, epoch=2))
  assert not np.array_equal(other_epoch["label"], full[0]["label"])


@testing.requires_fashion_mnist
def test_augmentation_crops_flips_and_cuts_out():
  config = _regime_config(train_subset=64, batch_size=64, label_noise=0.0)
  config.augment.update(crop_padding=2, random_flip=True, cutout_size=4)
  split = array_pipeline.load_split(config, "train")
  (batch,) = array_pipeline.train_batches(split, config, epoch=0)
  info = datasets.DATASETS["fashion_mnist"]
  padded = np.pad(split.images, [(0, 0), (2, 2), (2, 2), (0, 0)])

  def origins(image, label, cut):
    """(flipped,) of each crop of a training image of ``label`` that equals
    ``image`` outside the cut-out pixels."""
    for i in np.flatnonzero(split.labels == label):
      for y in range(5):
        for x in range(5):
          for flip in (False, True):
            window = padded[i, y:y + 28, x:x + 28]
            candidate = array_pipeline.normalize(window[:, ::-1] if flip else window, info)
            if np.array_equal(np.where(cut, 0.0, candidate), np.where(cut, 0.0, image)):
              yield flip

  flips = 0
  for image, label in zip(batch["image"], batch["label"]):
    cut = image == 0.0  # normalised pixels are never exactly 0
    assert 4 <= cut.sum() <= 16
    found = next(origins(image, label, cut), None)
    assert found is not None, "not a crop of a training image"
    flips += found
  assert 0 < flips < 64


def test_the_pipeline_is_chosen_by_the_config():
  config = testing.tiny_config()
  assert datasets.pipeline(config) is input_pipeline
  config.data_pipeline = "arrays"
  assert datasets.pipeline(config) is array_pipeline
  config.data_pipeline = "numpy"
  with pytest.raises(ValueError, match="config.data_pipeline='numpy'"):
    datasets.pipeline(config)
  config.data_pipeline, config.dataset = "arrays", "cifar10"
  with pytest.raises(ValueError, match="reads only fashion_mnist"):
    datasets.pipeline(config)


@pytest.mark.parametrize("overrides, message", [
    (dict(data_pipeline="numpy"), "config.data_pipeline='numpy': must be one of"),
    (dict(data_pipeline="arrays", dataset="cifar10", model="resnet18"),
     "config.data_pipeline='arrays': reads only fashion_mnist"),
])
def test_config_validation_names_the_pipeline(overrides, message):
  with pytest.raises(config_validation.ConfigError, match=re.escape(message)):
    config_validation.validate(testing.tiny_config(**overrides))


def test_missing_idx_files_are_reported(tmp_path, monkeypatch):
  monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
  with pytest.raises(datasets.DatasetNotFoundError, match="dataset-fashion-mnist"):
    array_pipeline.load_split(testing.tiny_config(), "train")


_WITHOUT_TENSORFLOW = """
import sys
sys.modules["tensorflow"] = None  # any import of TensorFlow now fails
sys.modules["tensorflow_datasets"] = None
from experiments import main
sys.argv = ["main"] + sys.argv[1:]
main.app.run(main.main, flags_parser=main.parse_flags)
"""


@testing.requires_fashion_mnist
def test_training_runs_without_tensorflow(tmp_path):
  workdir = tmp_path / "run"
  flags = testing.main_command(workdir, optimizer="sgd", num_epochs=1,
                               data_pipeline="arrays", validation_size=100)[3:]
  result = subprocess.run([sys.executable, "-c", _WITHOUT_TENSORFLOW, *flags],
                          cwd=testing.REPO_ROOT, capture_output=True, text=True,
                          env=testing.main_env(str(tmp_path / "jax_cache")))
  assert result.returncode == 0, result.stderr[-3000:]
  (metrics,) = [json.loads(line) for line in
                (workdir / "metrics.jsonl").read_text().splitlines()]
  assert metrics["test_accuracy"] > 0.2 and "validation_accuracy" in metrics
  assert "arrays:" in result.stdout  # the log names the source
