"""``shard_map`` over a "data" axis: global SAM via ``axis_name``, and m-sharpness."""

import jax
import numpy as np
import optax
from jax.sharding import AxisType, PartitionSpec as P

from experiments import tiny_mlp

from . import common
from .runner import NUM_DEVICES, case


def _shard_mapped_step(built, num_devices):
  """The train step on local batches inside shard_map over a "data" axis.

  ``check_vma=False``: ``jax.grad`` then returns each device's local gradient
  (as under ``pmap``), which ``update`` averages over ``axis_name``. With the
  default ``check_vma=True`` the gradient of replicated params comes back
  already summed over the axis, so it is not a local gradient.
  """
  step = common.train_step(built, common.BATCH // num_devices)
  mesh = jax.make_mesh((num_devices,), ("data",), axis_types=(AxisType.Auto,),
                       devices=jax.devices()[:num_devices])
  return jax.jit(jax.shard_map(
      step, mesh=mesh, in_specs=(P(), P(), P("data")), out_specs=(P(), P()),
      check_vma=False))


def _axis_name(name):
  built = common.make_optimizer(name, axis_name="data")
  params = tiny_mlp.init_params()
  step = _shard_mapped_step(built, NUM_DEVICES)
  params, state = common.run_steps(step, params, built.optimizer.init(params),
                                   common.global_batch())
  common.assert_matches_reference(params, state, name)


@case(slow=True)
def axis_name_sam():
  _axis_name("sam")


@case
def axis_name_ssam_fisher():
  _axis_name("ssam-f")


@case(slow=True)
def axis_name_ssam_dynamic():
  _axis_name("ssam-d")


def _m_sharpness_by_hand(num_shards, params, batch, mask, hyperparams):
  """Loops over the shards: eps_i = rho g_i / ||g_i|| (* mask), then averages."""
  assert hyperparams.weight_decay == 0
  base = optax.sgd(hyperparams.learning_rate, momentum=hyperparams.momentum)
  base_state = base.init(params)
  rho = hyperparams.rho
  flat, unflat = tiny_mlp.flat, tiny_mlp.unflat
  for _ in range(common.STEPS):
    perturbed_grads = []
    for i in range(num_shards):
      shard = jax.tree.map(lambda a: np.split(np.asarray(a), num_shards)[i], batch)
      g = flat(jax.grad(tiny_mlp.loss)(params, shard))
      eps = rho * g / np.linalg.norm(g)
      if mask is not None:
        eps = eps * flat(mask)
      w = unflat(flat(params) + eps, params)
      perturbed_grads.append(flat(jax.grad(tiny_mlp.loss)(w, shard)))
    mean = unflat(np.mean(perturbed_grads, axis=0), params)
    updates, base_state = base.update(mean, base_state, params)
    params = optax.apply_updates(params, updates)
  return params


def _m_sharpness(name):
  num_shards = 4  # 8 examples per device: m = 8.
  built = common.make_optimizer(name, axis_name="data", m_sharpness=True)
  params = tiny_mlp.init_params()
  state = built.optimizer.init(params)
  mask = state.mask if built.entry.has_mask else None
  step = _shard_mapped_step(built, num_shards)
  new_params, _ = common.run_steps(step, params, state, common.global_batch())
  expected = _m_sharpness_by_hand(num_shards, params, common.global_batch(), mask,
                                  built.hyperparams)
  common.assert_trees_close(new_params, expected, f"{name} m-sharpness",
                            eps_multiple=256)
  # m-sharpness is a different algorithm: it must not match the global one.
  global_built = common.make_optimizer(name)
  global_params, _ = common.run_steps(
      jax.jit(common.train_step(global_built, common.BATCH)),
      params, global_built.optimizer.init(params), common.global_batch())
  gap = np.max(np.abs(tiny_mlp.flat(new_params) - tiny_mlp.flat(global_params)))
  assert gap > 1e-4, f"m-sharpness indistinguishable from global SAM ({gap})"


@case
def m_sharpness_sam():
  _m_sharpness("sam")


@case(slow=True)
def m_sharpness_ssam_fixed_mask():
  _m_sharpness("ssam-random")
