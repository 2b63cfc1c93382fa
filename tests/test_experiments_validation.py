"""The validation split: carved from the training split, fixed, clean labels."""

import json

import numpy as np
import pytest

from experiments import input_pipeline
import experiment_helpers as testing
from experiments import train

NUM_TRAIN = 60_000


@pytest.fixture(scope="module")
def raw_train():
  """The stored Fashion-MNIST training split as numpy arrays."""
  split = input_pipeline.load_split(
      testing.tiny_config(train_subset=0, validation_size=0), "train")
  batch = next(split.dataset.batch(NUM_TRAIN).as_numpy_iterator())
  return batch["image"], batch["label"]


def _arrays(split):
  batch = next(split.dataset.batch(NUM_TRAIN).as_numpy_iterator())
  return batch["image"], batch["label"]


def test_validation_indices_depend_on_validation_seed_only():
  first = input_pipeline.validation_indices(NUM_TRAIN, 5_000, seed=0)
  np.testing.assert_array_equal(
      first, input_pipeline.validation_indices(NUM_TRAIN, 5_000, seed=0))
  other = input_pipeline.validation_indices(NUM_TRAIN, 5_000, seed=1)
  assert len(np.intersect1d(first, other)) < 1_000  # ~5_000**2 / 60_000 = 417
  assert len(np.unique(first)) == 5_000 and first.max() < NUM_TRAIN


@pytest.mark.parametrize("size", [0, NUM_TRAIN, -1])
def test_validation_size_out_of_range_is_refused(size):
  with pytest.raises(ValueError, match="validation_size"):
    input_pipeline.validation_indices(NUM_TRAIN, size, seed=0)


@testing.requires_fashion_mnist
def test_train_and_validation_partition_the_training_split(raw_train):
  images, labels = raw_train
  config = testing.tiny_config(train_subset=0, validation_size=5_000, seed=3)
  chosen = input_pipeline.validation_indices(NUM_TRAIN, 5_000, seed=0)
  rest = np.setdiff1d(np.arange(NUM_TRAIN), chosen)
  validation = input_pipeline.load_split(config, "validation")
  training = input_pipeline.load_split(config, "train")
  assert (validation.num_examples, training.num_examples) == (5_000, 55_000)
  for split, indices in ((validation, chosen), (training, rest)):
    split_images, split_labels = _arrays(split)
    np.testing.assert_array_equal(split_images, images[indices])
    np.testing.assert_array_equal(split_labels, labels[indices])


@testing.requires_fashion_mnist
def test_train_subset_is_taken_after_the_validation_examples(raw_train):
  images, _ = raw_train
  config = testing.tiny_config(train_subset=300, validation_size=5_000)
  rest = np.setdiff1d(np.arange(NUM_TRAIN),
                      input_pipeline.validation_indices(NUM_TRAIN, 5_000, 0))
  training = input_pipeline.load_split(config, "train")
  assert training.num_examples == 300
  np.testing.assert_array_equal(_arrays(training)[0], images[rest[:300]])


@testing.requires_fashion_mnist
def test_label_noise_touches_training_labels_only(raw_train):
  _, labels = raw_train
  config = testing.tiny_config(train_subset=2_000, validation_size=1_000,
                               test_subset=1_000, label_noise=0.5,
                               eval_batch_size=500)
  config.augment.crop_padding = 0
  config.augment.random_flip = False
  chosen = input_pipeline.validation_indices(NUM_TRAIN, 1_000, seed=0)
  validation = input_pipeline.load_split(config, "validation")
  seen = np.concatenate([b["label"][b["mask"]] for b in
                         input_pipeline.eval_batches(validation, config)])
  np.testing.assert_array_equal(seen, labels[chosen])

  test = input_pipeline.load_split(config, "test")
  test_labels = _arrays(test)[1]
  seen = np.concatenate([b["label"][b["mask"]] for b in
                         input_pipeline.eval_batches(test, config)])
  np.testing.assert_array_equal(seen, test_labels)

  # The same config does corrupt the training labels: 0.5 * 9/10 of them.
  training = input_pipeline.load_split(config, "train")
  train_images, train_labels = _arrays(training)
  clean = {image.tobytes(): label for image, label in zip(train_images, train_labels)}
  mean, std = input_pipeline.DATASETS["fashion_mnist"].mean[0], \
      input_pipeline.DATASETS["fashion_mnist"].std[0]
  changed = []
  for batch in input_pipeline.train_batches(training, config, epoch=0):
    raw = np.round((batch["image"] * std + mean) * 255).astype(np.uint8)
    changed += [label != clean[image.tobytes()]
                for image, label in zip(raw, batch["label"])]
  assert abs(np.mean(changed) - 0.45) < 0.05


@pytest.mark.slow  # a real multi-epoch run; -m slow runs it
@testing.requires_fashion_mnist
def test_validation_every_epoch_test_every_nth_and_the_last(tmp_path):
  config = testing.tiny_config(validation_size=256, num_epochs=3,
                               test_every_epochs=2)
  train.train_and_evaluate(config, str(tmp_path))
  records = [json.loads(line) for line in
             (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in records] == [1, 2, 3]
  assert all("validation_accuracy" in r for r in records)
  assert [r["epoch"] for r in records if "test_accuracy" in r] == [2, 3]
