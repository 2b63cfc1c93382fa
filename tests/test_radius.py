"""The effective perturbation radius ||eps|| against a float64 NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ssam_jax
from experiments import radius
import experiment_helpers as testing
import numerics


def _grads_and_mask(seed=0, keep=0.1):
  rng = np.random.default_rng(seed)
  grads = {"a": rng.normal(size=(6, 5)).astype(np.float32),
           "b": {"c": rng.normal(size=(7,)).astype(np.float32) * 3,
                 "d": rng.normal(size=(2, 2)).astype(np.float32)}}
  mask = jax.tree.map(lambda g: rng.random(g.shape) < keep, grads)
  return grads, mask


def _reference(grads, mask, rho, normalize, perturbable=None):
  """rho ||m g|| / ||g|| ("full") or rho ("masked"), in float64."""
  leaves = [np.asarray(g, np.float64) for g in jax.tree.leaves(grads)]
  masks = (jax.tree.leaves(mask) if mask is not None
           else [np.ones(g.shape, bool) for g in leaves])
  perturbable = perturbable or (True,) * len(leaves)
  used = [(g, m) for g, m, use in zip(leaves, masks, perturbable) if use]
  grad_norm = np.sqrt(sum(np.sum(g**2) for g, _ in used))
  masked_norm = np.sqrt(sum(np.sum((g * m)**2) for g, m in used))
  if mask is not None and normalize == "masked":
    return rho if masked_norm > 0 else 0.0
  return rho * masked_norm / grad_norm


@pytest.mark.parametrize("normalize", ["full", "masked"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 1.0])
def test_radius_matches_the_reference(normalize, keep):
  grads, mask = _grads_and_mask(keep=keep)
  actual = radius.effective_radius(grads, mask, 0.2, normalize)
  numerics.assert_trees_close(actual, _reference(grads, mask, 0.2, normalize),
                              scale=0.2)


def test_full_normalisation_shrinks_with_the_mask_and_sam_has_rho():
  grads, mask = _grads_and_mask(keep=0.1)
  sparse = float(radius.effective_radius(grads, mask, 0.2, "full"))
  assert 0 < sparse < 0.2 * 0.6  # about 0.2 * sqrt(0.1)
  numerics.assert_trees_close(radius.effective_radius(grads, None, 0.2), 0.2,
                              scale=0.2)


def test_norms_run_over_the_perturbable_leaves_only():
  grads, mask = _grads_and_mask(keep=0.3)
  perturbable = (True, False, True)
  mask = jax.tree.map(lambda m, use: m & use, mask,
                      jax.tree.unflatten(jax.tree.structure(mask), perturbable))
  actual = radius.effective_radius(grads, mask, 0.1, "full", perturbable)
  numerics.assert_trees_close(
      actual, _reference(grads, mask, 0.1, "full", perturbable), scale=0.1)


def test_a_zero_gradient_gives_zero_not_nan():
  grads = {"a": np.zeros((3,), np.float32)}
  for mask in (None, {"a": np.array([True, False, True])}):
    for normalize in ("full", "masked"):
      assert float(radius.effective_radius(grads, mask, 0.5, normalize)) == 0.0


@pytest.mark.parametrize("normalize", ["full", "masked"])
def test_radius_is_the_norm_of_the_library_perturbation(normalize):
  """The formula describes ssam_jax's eps: one SSAM step, then ||eps|| of the
  library's own perturbation with the mask it left in the state."""
  params = {"w": jnp.linspace(-1.0, 1.0, 40).reshape(8, 5),
            "b": jnp.linspace(0.5, 1.0, 5)}
  loss = lambda p: jnp.sum(jnp.sin(p["w"] @ p["b"]) ** 2) + jnp.sum(p["b"] ** 3)
  grads = jax.grad(loss)(params)
  optimizer = ssam_jax.ssam(optax.sgd(0.1), rho=0.3, sparsity=0.8,
                            mask=ssam_jax.random_mask(seed=1),
                            normalize=normalize)
  state = optimizer.init(params)
  _, state = optimizer.update(grads, state, params, grad_fn=jax.grad(loss))
  mask = optax.tree.get(state, "mask")
  eps = ssam_jax.perturbation.perturbation(
      grads, params, 0.3, (True, True), mask=mask, normalize=normalize)
  eps_norm = np.sqrt(sum(np.sum(np.asarray(e, np.float64) ** 2) for e in eps))
  config = testing.tiny_config(optimizer="ssam-random", rho=0.3,
                               normalize=normalize, perturbed_leaves="")
  numerics.assert_trees_close(radius.for_config(config)(grads, state), eps_norm,
                              scale=0.3)


def test_sgd_has_radius_zero():
  config = testing.tiny_config(optimizer="sgd")
  grads, _ = _grads_and_mask()
  assert float(radius.for_config(config)(grads, optax.EmptyState())) == 0.0
