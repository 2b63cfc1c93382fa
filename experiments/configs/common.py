"""Defaults shared by all dataset configs: the CIFAR recipe of the paper (Sec. 5.1)."""

import ml_collections
from ml_collections import config_dict


def get_base_config() -> ml_collections.ConfigDict:
  """Returns the CIFAR-10 / ResNet-18 / SSAM-F recipe; dataset configs override it."""
  config = ml_collections.ConfigDict()

  # Data.
  config.dataset = "cifar10"
  # tfds data_dir; None = the tfds default (~/tensorflow_datasets or $TFDS_DATA_DIR).
  config.data_dir = config_dict.placeholder(str)
  # Use only the first N examples of a split (0 = all). Real data, for smoke runs/tests.
  config.train_subset = 0
  config.test_subset = 0
  # Examples carved out of the training split (before train_subset is taken)
  # for model selection, evaluated every epoch. The same examples for every
  # seed and optimizer: they depend on validation_seed only.
  config.validation_size = 0
  config.validation_seed = 0
  # Fraction of training labels replaced by a uniformly random class (may equal the
  # true class), chosen deterministically from `seed`.
  config.label_noise = 0.0
  config.shuffle_buffer = 50_000
  # "tf.data" (experiments.input_pipeline: tfds, or Fashion-MNIST's IDX files)
  # or "arrays" (experiments.array_pipeline: Fashion-MNIST's IDX files in
  # memory, without TensorFlow; the same examples, split and label noise,
  # another shuffle order).
  config.data_pipeline = "tf.data"
  config.augment = ml_collections.ConfigDict()
  config.augment.crop_padding = 4       # random crop after zero padding; 0 disables
  config.augment.random_flip = True     # horizontal flip with probability 1/2
  config.augment.cutout_size = 16       # side of the Cutout square; 0 disables

  # Model.
  config.model = "resnet18"
  config.model_width = 0  # only used by the small CNN (0 = its default)

  # Optimisation (paper Sec. 5.1).
  # A name of experiments/optimizer_table.py: sgd | sam | optax-sam | ssam-f |
  # ssam-f-accumulated | ssam-d | ssam-random | ssam-random-resampled.
  config.optimizer = "ssam-f"
  config.batch_size = 128
  config.eval_batch_size = 1000
  # The test set is evaluated at every N-th epoch and the last; the validation
  # split (if any) at every epoch. Evaluation never changes training.
  config.test_every_epochs = 1
  config.num_epochs = 200
  config.learning_rate = 0.05  # peak of the cosine schedule
  config.momentum = 0.9
  config.weight_decay_sgd = 5e-4  # used by sgd
  config.weight_decay_sam = 1e-3  # used by every optimizer that perturbs
  config.rho = 0.1
  # Sparse SAM. The paper does not state T_m or N_F; its code sweeps
  # update_freq in {1, 5} epochs and num_samples in {128, 1024}.
  config.sparsity = 0.5
  # T_m in epochs (fractions allowed); the trainer converts it to steps from
  # the real steps per epoch, so batch size and train_subset keep it true.
  config.mask_update_epochs = 1.0
  config.num_fisher_samples = 128  # N_F, taken from the current batch (<= batch_size)
  config.drop_rate = 0.5  # SSAM-D drop ratio alpha, cosine-decayed over training
  config.pattern = "unstructured"  # unstructured | tensorwise | N:M such as "2:4"
  # "full": eps = rho * (g * m) / ||g|| (the paper); "masked": / ||g * m||.
  config.normalize = "full"
  # Tensorwise + masked only: the first gradient is taken for the perturbed
  # tensors alone (ssam_jax.value_and_partial_grad), except on refresh steps.
  config.fast_path = False
  # Regex on "Module_0/kernel" leaf paths that may be perturbed ("" = every
  # leaf); sparsity then counts only the matching leaves.
  config.perturbed_leaves = ""
  # Cheaper ascents (docs/efficient.md), for every optimizer that perturbs
  # except optax-sam; the defaults are plain SAM/SSAM, ascending every step.
  # "always" | "scheduled" (every ascent_every-th step, or with probability
  # ascent_probability) | "looksam" (every ascent_every-th step, its
  # direction reused in between) | "msam" (along the momentum, one gradient).
  config.ascent = "always"
  config.ascent_every = 1  # k of "scheduled" and "looksam"
  # p of "scheduled" (RST), in [0, 1); 0 = every ascent_every-th step. A p > 0
  # needs ascent_every = 1. Drawn on the host from seed and step.
  config.ascent_probability = 0.0
  config.looksam_alpha = 0.7  # LookSAM's alpha (Liu et al.)
  # The first gradient (the ascent direction, at w) from the first
  # round(f * batch_size) examples of the batch, for a cost of 1 + f
  # gradients; the second, at w + eps, from the whole batch. With "always"
  # and "scheduled" only.
  config.ascent_batch_fraction = 1.0

  # Run.
  config.seed = 0
  config.checkpoint_every_steps = 0  # extra mid-epoch checkpoints; 0 = per epoch only
  config.max_checkpoints_to_keep = 2
  config.log_every_steps = 20  # progress bar refresh (forces a device sync)
  # 0: a non-finite loss or parameters stop the run. N > 0: skip steps whose
  # update is not finite, up to N in a row (optax.apply_if_finite inside the
  # SAM/SSAM wrapper, see experiments/divergence.py).
  config.skip_nonfinite_steps = 0
  return config
