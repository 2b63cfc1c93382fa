"""One step of SAM, SSAM-F and SSAM-D against a plain NumPy reference."""

import math

import jax
import numpy as np
import optax
import pytest

import numerics
import ssam_jax
from experiments.tiny_mlp import (example_loss, flat, init_params, loss,
                                  synthetic_batch, unflat)

LEARNING_RATE, RHO = 0.1, 0.3


def grad_vector(params_vector, like, batch):
  return flat(jax.grad(loss)(unflat(params_vector, like), batch))


def top_k_by_sorting(scores, k):
  """Indices of the k largest scores, ties to the lower index."""
  order = np.argsort(-scores, kind="stable")
  mask = np.zeros(scores.shape, bool)
  mask[order[:k]] = True
  return mask


def reference_step(params, batch, mask):
  """w - lr * grad f(w + rho * g / ||g|| * mask), in float64 NumPy."""
  w = flat(params)
  g = grad_vector(w, params, batch)
  eps = RHO * g / np.linalg.norm(g) * mask
  return w - LEARNING_RATE * grad_vector(w + eps, params, batch)


def run_one_step(opt, params, batch, **kwargs):
  state = opt.init(params)
  updates, state = opt.update(jax.grad(loss)(params, batch), state, params,
                              grad_fn=lambda p: jax.grad(loss)(p, batch), **kwargs)
  return optax.apply_updates(params, updates), state


def test_sam_step_matches_reference():
  params, batch = init_params(), synthetic_batch()
  new_params, _ = run_one_step(ssam_jax.sam(optax.sgd(LEARNING_RATE), RHO), params, batch)
  expected = reference_step(params, batch, mask=1.0)
  numerics.assert_trees_close(flat(new_params), expected)


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.9])
def test_ssam_fisher_step_matches_reference(sparsity):
  params, batch = init_params(), synthetic_batch(size=16)
  num_samples = 12
  per_example = [flat(jax.grad(example_loss)(params, jax.tree.map(lambda a: a[i], batch)))
                 for i in range(num_samples)]
  fisher = np.mean(np.square(per_example), axis=0)
  k = math.floor((1 - sparsity) * fisher.size)
  numerics.assert_clear_top_k(fisher, k)  # so the masks compare exactly
  expected_mask = top_k_by_sorting(fisher, k)

  opt = ssam_jax.ssam(optax.sgd(LEARNING_RATE), RHO, sparsity,
                      mask=ssam_jax.fisher_mask(accumulate=False), mask_update_every=1)
  new_params, state = run_one_step(
      opt, params, batch,
      fisher_fn=ssam_jax.empirical_fisher(example_loss, batch, num_samples, chunk_size=5))

  np.testing.assert_array_equal(flat(state.mask).astype(bool), expected_mask)
  numerics.assert_trees_close(flat(new_params), reference_step(params, batch, expected_mask))


def test_ssam_fisher_without_fisher_fn_uses_squared_minibatch_gradients():
  params, batch = init_params(), synthetic_batch()
  opt = ssam_jax.ssam(optax.sgd(LEARNING_RATE), RHO, 0.5,
                      mask=ssam_jax.fisher_mask(accumulate=True), mask_update_every=1)
  _, state = run_one_step(opt, params, batch)
  g = flat(jax.grad(loss)(params, batch))
  numerics.assert_clear_top_k(g ** 2, math.floor(0.5 * g.size))
  expected = top_k_by_sorting(g ** 2, math.floor(0.5 * g.size))
  np.testing.assert_array_equal(flat(state.mask).astype(bool), expected)


def test_ssam_dynamic_step_matches_reference():
  sparsity, drop_rate, total_steps = 0.5, 0.5, 1000
  params, batch = init_params(), synthetic_batch()
  opt = ssam_jax.ssam(optax.sgd(LEARNING_RATE), RHO, sparsity,
                      mask_update_every=1,
                      mask=ssam_jax.dynamic_mask(total_steps, drop_rate=drop_rate,
                                                 growth_criterion="gradient"))
  initial_mask = flat(opt.init(params).mask).astype(bool)
  d = initial_mask.size
  k = math.floor((1 - sparsity) * d)
  assert initial_mask.sum() == k

  # Step 0 of the cosine decay drops a fraction drop_rate of the live entries.
  g = np.abs(flat(jax.grad(loss)(params, batch)))
  num_kept = math.floor((1 - sparsity) * (1 - drop_rate) * d)
  numerics.assert_clear_top_k(np.where(initial_mask, g, -np.inf), num_kept)
  kept = top_k_by_sorting(np.where(initial_mask, g, -np.inf), num_kept)
  numerics.assert_clear_top_k(np.where(kept, -np.inf, g), k - num_kept)
  grown = top_k_by_sorting(np.where(kept, -np.inf, g), k - num_kept)
  expected_mask = kept | grown

  new_params, state = run_one_step(opt, params, batch)
  np.testing.assert_array_equal(flat(state.mask).astype(bool), expected_mask)
  numerics.assert_trees_close(flat(new_params), reference_step(params, batch, expected_mask))


def test_masked_normalization_uses_norm_of_masked_gradient():
  params, batch = init_params(), synthetic_batch()
  opt = ssam_jax.ssam(optax.sgd(LEARNING_RATE), RHO, 0.5, normalize="masked",
                      mask=ssam_jax.fisher_mask(accumulate=True), mask_update_every=1)
  new_params, state = run_one_step(opt, params, batch)
  mask = flat(state.mask).astype(bool)
  w, g = flat(params), grad_vector(flat(params), params, batch)
  eps = RHO * g * mask / np.linalg.norm(g * mask)
  expected = w - LEARNING_RATE * grad_vector(w + eps, params, batch)
  numerics.assert_trees_close(flat(new_params), expected)


def test_adaptive_perturbation_matches_asam_formula():
  eta = 0.01
  params, batch = init_params(), synthetic_batch()
  opt = ssam_jax.sam(optax.sgd(LEARNING_RATE), RHO, adaptive_eta=eta)
  new_params, _ = run_one_step(opt, params, batch)
  w = flat(params)
  g = grad_vector(w, params, batch)
  t = np.abs(w) + eta
  eps = RHO * t ** 2 * g / np.linalg.norm(t * g)
  expected = w - LEARNING_RATE * grad_vector(w + eps, params, batch)
  numerics.assert_trees_close(flat(new_params), expected)


def test_perturbed_leaves_excludes_biases_from_perturbation_and_norm():
  params, batch = init_params(), synthetic_batch()
  opt = ssam_jax.sam(optax.sgd(LEARNING_RATE), RHO, perturbed_leaves=ssam_jax.kernels_only)
  new_params, _ = run_one_step(opt, params, batch)
  is_kernel = flat(jax.tree.map(lambda p: np.full(p.shape, p.ndim >= 2), params)).astype(bool)
  w, g = flat(params), grad_vector(flat(params), params, batch)
  eps = RHO * g * is_kernel / np.linalg.norm(g[is_kernel])
  expected = w - LEARNING_RATE * grad_vector(w + eps, params, batch)
  numerics.assert_trees_close(flat(new_params), expected)


def test_leaves_matching_perturbs_only_matching_paths():
  params, batch = init_params(), synthetic_batch()
  opt = ssam_jax.sam(optax.sgd(LEARNING_RATE), RHO,
                     perturbed_leaves=ssam_jax.leaves_matching(r"^dense2/"))
  new_params, _ = run_one_step(opt, params, batch)
  in_dense2 = {"dense1": jax.tree.map(lambda p: np.zeros(p.shape), params["dense1"]),
               "dense2": jax.tree.map(lambda p: np.ones(p.shape), params["dense2"])}
  in_dense2 = flat(in_dense2).astype(bool)
  w, g = flat(params), grad_vector(flat(params), params, batch)
  eps = RHO * g * in_dense2 / np.linalg.norm(g[in_dense2])
  expected = w - LEARNING_RATE * grad_vector(w + eps, params, batch)
  numerics.assert_trees_close(flat(new_params), expected)


def test_empirical_fisher_matches_python_loop_for_any_chunk_size_and_unroll():
  params, batch = init_params(), synthetic_batch(size=10)
  per_example = [jax.grad(example_loss)(params, jax.tree.map(lambda a: a[i], batch))
                 for i in range(7)]
  expected = jax.tree.map(lambda *g: np.mean(np.square(np.stack(g)), axis=0), *per_example)
  for chunk_size in (1, 3, 7, 32):
    for unroll in (1, 2, True, False):  # 7 chunks of 1: a remainder when 2
      fisher = ssam_jax.empirical_fisher(example_loss, batch, 7, chunk_size=chunk_size,
                                         unroll=unroll)(params)
      numerics.assert_trees_close(fisher, expected)
