"""FSDP: parameters (and so the mask and Fisher sums) sharded over "fsdp".

Also checks, in compiled HLO, that the optimizer's global top-k moves
scalars only between devices, and that sharded top-k breaks ties as the
unsharded one does.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from experiments import steps
from experiments import tiny_mlp
import ssam_jax

from . import common
from .runner import case

FSDP_SPECS = {"dense1": {"kernel": (None, "fsdp"), "bias": ("fsdp",)},
              "dense2": {"kernel": ("fsdp", None), "bias": (None,)}}
# Kernels sharded along either dimension; one leaf replicated.


def _fsdp_mesh(axis_type):
  return jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(axis_type,) * 2)


def _shard_params(params, mesh):
  return jax.tree.map(lambda p, s: jax.device_put(p, NamedSharding(mesh, P(*s))),
                      params, FSDP_SPECS)


def _gathered(mesh, loss):
  """FSDP: gather each parameter for the forward pass; the state stays sharded."""
  def gathered(params, batch):
    params = jax.tree.map(
        lambda p: jax.sharding.reshard(p, NamedSharding(mesh, P())), params)
    return loss(params, batch)
  return gathered


def _explicit(x):
  return AxisType.Explicit in jax.typeof(x).sharding.mesh.axis_types


def assert_sharded_like_params(state_part, params, what):
  for x, p in zip(jax.tree.leaves(state_part), jax.tree.leaves(params)):
    assert x.shape == p.shape, (what, x.shape, p.shape)
    assert x.sharding.is_equivalent_to(p.sharding, p.ndim), (
        what, x.sharding, p.sharding)
    if _explicit(p):
      assert jax.typeof(x).sharding.spec == jax.typeof(p).sharding.spec, (
          what, jax.typeof(x), jax.typeof(p))


def _fsdp(name, axis_type):
  mesh = _fsdp_mesh(axis_type)
  built = common.make_optimizer(name)
  with jax.set_mesh(mesh):
    params = _shard_params(tiny_mlp.init_params(), mesh)
    batch = jax.device_put(common.global_batch(), NamedSharding(mesh, P("data")))
    state = built.optimizer.init(params)
    if built.entry.has_mask:
      assert_sharded_like_params(state.mask, params, "initial mask")
    if name == "ssam-f-accumulated":
      assert_sharded_like_params(state.mask_state.squared_grad_sum, params,
                                 "Fisher sums")
    types = jax.tree.map(jax.typeof, (params, state))
    shardings = jax.tree.map(lambda x: x.sharding, (params, state))
    step = jax.jit(common.train_step(
        built, common.BATCH, _gathered(mesh, tiny_mlp.loss),
        _gathered(mesh, tiny_mlp.example_loss)))
    params, state = common.run_steps(step, params, state, batch)
    assert jax.tree.map(jax.typeof, (params, state)) == types
    for x, s in zip(jax.tree.leaves((params, state)), jax.tree.leaves(shardings)):
      assert x.sharding.is_equivalent_to(s, x.ndim), (x.sharding, s)
    if built.entry.has_mask:
      assert_sharded_like_params(state.mask, params, "refreshed mask")
  common.assert_matches_reference(params, state, name)


@case
def fsdp_explicit_ssam_fisher():
  _fsdp("ssam-f", AxisType.Explicit)


@case(slow=True)
def fsdp_explicit_ssam_dynamic():
  _fsdp("ssam-d", AxisType.Explicit)


@case(slow=True)
def fsdp_auto_ssam_fisher():
  _fsdp("ssam-f", AxisType.Auto)


@case(slow=True)
def fsdp_auto_ssam_fisher_accumulated():
  """The accumulated squared gradients stay sharded like the params."""
  _fsdp("ssam-f-accumulated", AxisType.Auto)


_COLLECTIVE = re.compile(r"\b(all-gather|all-reduce|all-to-all|"
                         r"collective-permute|reduce-scatter)(-start)?\(")


def collectives(hlo_text):
  """(result type, op) of every collective in compiled HLO text."""
  found = []
  for line in hlo_text.splitlines():
    match = _COLLECTIVE.search(line)
    if match:
      result_type = line[line.find("=") + 1:match.start()].strip()
      found.append((result_type, match.group(1)))
  return found


def _fsdp_update_collectives(strategy, axis_type):
  """Compiles one SSAM step of sharded params with an elementwise loss.

  The loss needs no gathering, so any collective moving more than a scalar
  comes from the optimizer (global norm, top-k, tie-breaking, Fisher).
  """
  mesh = jax.make_mesh((4,), ("fsdp",), axis_types=(axis_type,),
                       devices=jax.devices()[:4])
  keys = jax.random.split(jax.random.key(0), 2)
  params = {"a": jax.random.normal(keys[0], (64, 32)),
            "b": jax.random.normal(keys[1], (32, 64))}
  specs = {"a": P("fsdp", None), "b": P(None, "fsdp")}
  opt = ssam_jax.ssam(optax.adam(0.1), rho=0.05, sparsity=0.5, mask=strategy,
                      mask_update_every=1)

  def loss(p, batch=None):  # the batch plays no part
    del batch
    return sum(jnp.sum(jnp.sin(x - 1.0) ** 2) for x in jax.tree.leaves(p))

  def example_loss(p, example):
    return loss(p) * example

  train_step = steps.make_train_step(steps.stateless_loss_fns(loss, example_loss),
                                     opt, num_fisher_samples=4)

  def step(params, state):
    out = train_step(params, state, None, jnp.ones(4))
    return out.params, out.opt_state

  with jax.set_mesh(mesh):
    params = jax.tree.map(lambda p, s: jax.device_put(p, NamedSharding(mesh, s)),
                          params, specs)
    state = opt.init(params)
    hlo = jax.jit(step).lower(params, state).compile().as_text()
  return collectives(hlo)


def _assert_only_scalar_collectives(found):
  assert found, "expected all-reduces of the global norm and top-k counts"
  for result_type, op in found:
    assert op == "all-reduce", (op, result_type)
    shapes = re.findall(r"\[([^\]]*)\]", result_type)
    assert all(s == "" for s in shapes), f"non-scalar {op}: {result_type}"


@case(slow=True)
def fsdp_topk_no_gather_explicit():
  for strategy in (ssam_jax.fisher_mask(), ssam_jax.dynamic_mask(total_steps=9)):
    _assert_only_scalar_collectives(
        _fsdp_update_collectives(strategy, AxisType.Explicit))


@case
def fsdp_topk_no_gather_auto():
  for strategy in (ssam_jax.fisher_mask(), ssam_jax.dynamic_mask(total_steps=9)):
    _assert_only_scalar_collectives(
        _fsdp_update_collectives(strategy, AxisType.Auto))


@case(slow=True)
def fsdp_topk_ties_match_single_device():
  """Global top-k with many ties, leaves sharded, equals the unsharded one."""
  mesh = jax.make_mesh((4,), ("fsdp",), axis_types=(AxisType.Explicit,),
                       devices=jax.devices()[:4])
  rng = np.random.default_rng(0)
  scores = {"a": rng.integers(0, 3, (8, 12)).astype(np.float32),
            "b": rng.integers(0, 3, (12, 8)).astype(np.float32)}
  specs = {"a": P("fsdp", None), "b": P(None, "fsdp")}
  for k in (0, 5, 37, 100, 192):
    expected = jax.jit(ssam_jax.topk_mask, static_argnums=1)(scores, k)
    with jax.set_mesh(mesh):
      sharded = jax.tree.map(lambda s, p: jax.device_put(s, NamedSharding(mesh, p)),
                             scores, specs)
      actual = jax.jit(ssam_jax.topk_mask, static_argnums=1)(sharded, k)
      for a, s in zip(jax.tree.leaves(actual), jax.tree.leaves(sharded)):
        assert jax.typeof(a).sharding.spec == jax.typeof(s).sharding.spec
    common.assert_trees_close(actual, expected, f"top-{k}")
    assert sum(int(np.sum(a)) for a in jax.tree.leaves(actual)) == k
