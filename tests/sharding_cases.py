"""Multi-device checks of SAM and SSAM, run by ``test_sharding.py``.

JAX fixes the number of CPU devices when its backend starts, which the main
pytest process has long done, so these checks run in a fresh process::

  python tests/sharding_cases.py OUT.json [CASE ...]

It asks for 8 CPU devices, runs every case (or the named ones), and writes
``{case: "ok" or the traceback}`` to ``OUT.json``. Importing this module has
no side effect (pytest's ``--doctest-modules`` imports it).
"""

import functools
import json
import re
import sys
import traceback

NUM_DEVICES = 8
STEPS = 3  # With MASK_UPDATE_EVERY = 2, the mask is refreshed on steps 0 and 2.
MASK_UPDATE_EVERY = 2
BATCH = 32

CASES = {}


def case(fn):
  CASES[fn.__name__] = fn
  return fn


# --------------------------------------------------------------------------
# Shared set-up (imports happen after the device count is set in main()).


def _imports():
  global jax, jnp, np, optax, ssam_jax, small_mlp, P, NamedSharding, AxisType
  import jax  # pylint: disable=redefined-outer-name
  import jax.numpy as jnp  # pylint: disable=redefined-outer-name
  import numpy as np  # pylint: disable=redefined-outer-name
  import optax  # pylint: disable=redefined-outer-name
  from jax.sharding import AxisType, NamedSharding, PartitionSpec as P  # pylint: disable=redefined-outer-name
  import small_mlp  # pylint: disable=redefined-outer-name
  import ssam_jax  # pylint: disable=redefined-outer-name


def make_optimizer(name, axis_name=None, m_sharpness=False):
  base = optax.sgd(0.1, momentum=0.9)
  if name == "sam":
    return ssam_jax.sam(base, rho=0.1, axis_name=axis_name,
                        m_sharpness=m_sharpness)
  strategy = {"ssam_f": ssam_jax.fisher_mask(),
              "ssam_d": ssam_jax.dynamic_mask(total_steps=STEPS),
              "ssam_r": ssam_jax.random_mask(seed=3)}[name]
  return ssam_jax.ssam(base, rho=0.1, sparsity=0.6, mask=strategy,
                       mask_update_every=MASK_UPDATE_EVERY,
                       axis_name=axis_name, m_sharpness=m_sharpness)


def train_step(opt, name, loss, example_loss, params, state, batch):
  """One SAM/SSAM step; ``loss`` sees the batch it is given (local or global)."""
  grads = jax.grad(loss)(params, batch)
  extra = {}
  if name == "ssam_f":
    size = jax.tree.leaves(batch)[0].shape[0]
    extra["fisher_fn"] = ssam_jax.empirical_fisher(
        example_loss, batch, num_samples=size, chunk_size=8)
  updates, state = opt.update(grads, state, params,
                              grad_fn=lambda p: jax.grad(loss)(p, batch),
                              **extra)
  return optax.apply_updates(params, updates), state


def run_steps(step, params, state, batch):
  for _ in range(STEPS):
    params, state = step(params, state, batch)
  return params, state


@functools.lru_cache(maxsize=None)
def reference(name):
  """The single-device result: plain arrays, no mesh, no axis name."""
  opt = make_optimizer(name)
  step = jax.jit(functools.partial(train_step, opt, name, small_mlp.loss,
                                   small_mlp.example_loss))
  params = small_mlp.init_params()
  return run_steps(step, params, opt.init(params), global_batch())


def global_batch():
  return small_mlp.synthetic_batch(seed=1, size=BATCH)


def assert_trees_close(actual, expected, what, atol=2e-6):
  """Same structure; booleans and integers equal, floats within ``atol``."""
  a_leaves, a_def = jax.tree.flatten(actual)
  e_leaves, e_def = jax.tree.flatten(expected)
  assert a_def == e_def, f"{what}: {a_def} != {e_def}"
  for i, (a, e) in enumerate(zip(a_leaves, e_leaves)):
    a, e = np.asarray(a), np.asarray(e)
    assert a.shape == e.shape and a.dtype == e.dtype, (what, i, a.shape, e.shape)
    if np.issubdtype(a.dtype, np.floating):
      np.testing.assert_allclose(a, e, rtol=0, atol=atol, err_msg=f"{what} leaf {i}")
    else:
      np.testing.assert_array_equal(a, e, err_msg=f"{what} leaf {i}")


def assert_state_refreshed(state, name):
  """Guards against a vacuous comparison: the mask really changed."""
  if name == "sam":
    return
  initial = make_optimizer(name).init(small_mlp.init_params()).mask
  changed = any(bool(np.any(np.asarray(a) != np.asarray(b)))
                for a, b in zip(jax.tree.leaves(state.mask),
                                jax.tree.leaves(initial)))
  assert changed, f"{name}: the mask was never refreshed"


# --------------------------------------------------------------------------
# 1. Data parallel with jax.jit and NamedSharding.


def _data_parallel(name, axis_type=None):
  """With ``axis_type`` None, the mesh is Auto: jit + NamedSharding."""
  mesh = jax.make_mesh((NUM_DEVICES,), ("data",),
                       axis_types=(axis_type or AxisType.Auto,))
  replicated = NamedSharding(mesh, P())
  opt = make_optimizer(name)
  params = jax.device_put(small_mlp.init_params(), replicated)
  batch = jax.device_put(global_batch(), NamedSharding(mesh, P("data")))
  assert len(batch["x"].sharding.device_set) == NUM_DEVICES
  step = jax.jit(functools.partial(train_step, opt, name, small_mlp.loss,
                                   small_mlp.example_loss))
  params, state = run_steps(step, params, opt.init(params), batch)
  for leaf in jax.tree.leaves(params):
    assert leaf.sharding.is_fully_replicated, leaf.sharding
  ref_params, ref_state = reference(name)
  assert_trees_close(params, ref_params, f"{name} params")
  assert_trees_close(state, ref_state, f"{name} state")
  assert_state_refreshed(state, name)


@case
def data_parallel_sam():
  _data_parallel("sam")


@case
def data_parallel_ssam_fisher():
  _data_parallel("ssam_f")


@case
def data_parallel_ssam_dynamic():
  _data_parallel("ssam_d")


@case
def data_parallel_explicit_ssam_fisher():
  _data_parallel("ssam_f", AxisType.Explicit)


def _conv_example_loss(params, example):
  """A conv layer and a linear read-out, for one NHWC example."""
  features = jax.lax.conv_general_dilated(
      example["x"][None], params["conv"], (1, 1), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  logits = jnp.tanh(features).mean((1, 2)) @ params["dense"]
  return -jax.nn.log_softmax(logits)[0, example["y"]]


@case
def data_parallel_conv_fisher_under_mesh():
  """The Fisher of a conv net from a sharded batch equals per-example loops.

  Guards the replication in ``ssam_jax.fisher``: without it XLA partitions
  the vmapped per-example conv gradients wrongly (docs/scaling.md).
  """
  mesh = jax.make_mesh((NUM_DEVICES,), ("data",), axis_types=(AxisType.Auto,))
  keys = jax.random.split(jax.random.key(0), 3)
  params = {"conv": jax.random.normal(keys[0], (3, 3, 2, 4)),
            "dense": jax.random.normal(keys[1], (4, 3))}
  batch = {"x": jax.random.normal(keys[2], (BATCH, 8, 8, 2)),
           "y": jnp.arange(BATCH) % 3}
  num_samples = BATCH // 2
  per_example = [jax.grad(_conv_example_loss)(
      params, jax.tree.map(lambda a, i=i: a[i], batch)) for i in range(num_samples)]
  expected = jax.tree.map(
      lambda *g: np.mean(np.square(np.asarray(g, np.float64)), axis=0), *per_example)
  sharded = jax.device_put(batch, NamedSharding(mesh, P("data")))
  with jax.set_mesh(mesh):
    fisher = jax.jit(lambda p, b: ssam_jax.empirical_fisher(
        _conv_example_loss, b, num_samples, chunk_size=num_samples)(p))(
            params, sharded)
  for name in params:
    np.testing.assert_allclose(fisher[name], expected[name], rtol=1e-4,
                               atol=1e-7, err_msg=name)


# --------------------------------------------------------------------------
# 2 and 3. shard_map with axis_name: global, and m-sharpness.


def _shard_mapped_step(opt, name, num_devices):
  """The train step on local batches inside shard_map over a "data" axis.

  ``check_vma=False``: ``jax.grad`` then returns each device's local gradient
  (as under ``pmap``), which ``update`` averages over ``axis_name``. With the
  default ``check_vma=True`` the gradient of replicated params comes back
  already summed over the axis, so it is not a local gradient.
  """
  step = functools.partial(train_step, opt, name, small_mlp.loss,
                           small_mlp.example_loss)
  mesh = jax.make_mesh((num_devices,), ("data",), axis_types=(AxisType.Auto,),
                       devices=jax.devices()[:num_devices])
  return jax.jit(jax.shard_map(
      step, mesh=mesh, in_specs=(P(), P(), P("data")), out_specs=(P(), P()),
      check_vma=False))


def _axis_name(name):
  opt = make_optimizer(name, axis_name="data")
  params = small_mlp.init_params()
  step = _shard_mapped_step(opt, name, NUM_DEVICES)
  params, state = run_steps(step, params, opt.init(params), global_batch())
  ref_params, ref_state = reference(name)
  assert_trees_close(params, ref_params, f"{name} params")
  assert_trees_close(state, ref_state, f"{name} state")
  assert_state_refreshed(state, name)


@case
def axis_name_sam():
  _axis_name("sam")


@case
def axis_name_ssam_fisher():
  _axis_name("ssam_f")


@case
def axis_name_ssam_dynamic():
  _axis_name("ssam_d")


def _m_sharpness_by_hand(name, num_shards, params, batch, mask):
  """Loops over the shards: eps_i = rho g_i / ||g_i|| (* mask), then averages."""
  base = optax.sgd(0.1, momentum=0.9)
  base_state = base.init(params)
  rho = 0.1
  for _ in range(STEPS):
    perturbed_grads = []
    for i in range(num_shards):
      shard = jax.tree.map(lambda a: np.split(np.asarray(a), num_shards)[i], batch)
      g = small_mlp.flat(jax.grad(small_mlp.loss)(params, shard))
      eps = rho * g / np.linalg.norm(g)
      if mask is not None:
        eps = eps * small_mlp.flat(mask)
      w = small_mlp.unflat(small_mlp.flat(params) + eps, params)
      perturbed_grads.append(small_mlp.flat(jax.grad(small_mlp.loss)(w, shard)))
    mean = small_mlp.unflat(np.mean(perturbed_grads, axis=0), params)
    updates, base_state = base.update(mean, base_state, params)
    params = optax.apply_updates(params, updates)
  return params


def _m_sharpness(name):
  num_shards = 4  # 8 examples per device: m = 8.
  opt = make_optimizer(name, axis_name="data", m_sharpness=True)
  params = small_mlp.init_params()
  state = opt.init(params)
  mask = None if name == "sam" else state.mask
  step = _shard_mapped_step(opt, name, num_shards)
  new_params, _ = run_steps(step, params, state, global_batch())
  expected = _m_sharpness_by_hand(name, num_shards, params, global_batch(), mask)
  assert_trees_close(new_params, expected, f"{name} m-sharpness", atol=1e-5)
  # m-sharpness is a different algorithm: it must not match the global one.
  global_params, _ = run_steps(
      jax.jit(functools.partial(train_step, make_optimizer(name), name,
                                small_mlp.loss, small_mlp.example_loss)),
      params, make_optimizer(name).init(params), global_batch())
  gap = np.max(np.abs(small_mlp.flat(new_params) - small_mlp.flat(global_params)))
  assert gap > 1e-4, f"m-sharpness indistinguishable from global SAM ({gap})"


@case
def m_sharpness_sam():
  _m_sharpness("sam")


@case
def m_sharpness_ssam_fixed_mask():
  _m_sharpness("ssam_r")


# --------------------------------------------------------------------------
# 4. FSDP: parameters (and so the mask and Fisher sums) sharded over "fsdp".

FSDP_SPECS = {"dense1": {"kernel": (None, "fsdp"), "bias": ("fsdp",)},
              "dense2": {"kernel": ("fsdp", None), "bias": (None,)}}
# Kernels sharded along either dimension; one leaf replicated.


def _fsdp_mesh(axis_type):
  return jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(axis_type,) * 2)


def _shard_params(params, mesh):
  return jax.tree.map(lambda p, s: jax.device_put(p, NamedSharding(mesh, P(*s))),
                      params, FSDP_SPECS)


def _gathered_loss(mesh, loss):
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
  opt = make_optimizer(name)
  with jax.set_mesh(mesh):
    params = _shard_params(small_mlp.init_params(), mesh)
    batch = jax.device_put(global_batch(), NamedSharding(mesh, P("data")))
    state = opt.init(params)
    if name != "sam":
      assert_sharded_like_params(state.mask, params, "initial mask")
    if name == "ssam_f":
      assert_sharded_like_params(state.mask_state.squared_grad_sum, params,
                                 "Fisher sums")
    types = jax.tree.map(jax.typeof, (params, state))
    shardings = jax.tree.map(lambda x: x.sharding, (params, state))
    step = jax.jit(functools.partial(
        train_step, opt, name, _gathered_loss(mesh, small_mlp.loss),
        _gathered_loss(mesh, small_mlp.example_loss)))
    params, state = run_steps(step, params, state, batch)
    assert jax.tree.map(jax.typeof, (params, state)) == types
    for x, s in zip(jax.tree.leaves((params, state)), jax.tree.leaves(shardings)):
      assert x.sharding.is_equivalent_to(s, x.ndim), (x.sharding, s)
    if name != "sam":
      assert_sharded_like_params(state.mask, params, "refreshed mask")
  ref_params, ref_state = reference(name)
  assert_trees_close(params, ref_params, f"{name} params")
  assert_trees_close(state, ref_state, f"{name} state")
  assert_state_refreshed(state, name)


@case
def fsdp_explicit_ssam_fisher():
  _fsdp("ssam_f", AxisType.Explicit)


@case
def fsdp_explicit_ssam_dynamic():
  _fsdp("ssam_d", AxisType.Explicit)


@case
def fsdp_auto_ssam_fisher():
  _fsdp("ssam_f", AxisType.Auto)


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
  """Compiles one SSAM update of sharded params with an elementwise loss.

  The loss needs no gathering, so any collective moving more than a scalar
  comes from the optimizer (global norm, top-k, tie-breaking, Fisher).
  """
  mesh = jax.make_mesh((4,), ("fsdp",), axis_types=(axis_type,),
                       devices=jax.devices()[:4])
  keys = jax.random.split(jax.random.key(0), 2)
  params = {"a": jax.random.normal(keys[0], (64, 32)),
            "b": jax.random.normal(keys[1], (32, 64))}
  specs = {"a": P("fsdp", None), "b": P(None, "fsdp")}
  opt = ssam_jax.ssam(optax.adam(0.1), rho=0.05, sparsity=0.5, mask=strategy)

  def loss(p):
    return sum(jnp.sum(jnp.sin(x - 1.0) ** 2) for x in jax.tree.leaves(p))

  def example_loss(p, example):
    return loss(p) * example

  def step(params, state):
    updates, state = opt.update(
        jax.grad(loss)(params), state, params, grad_fn=jax.grad(loss),
        fisher_fn=ssam_jax.empirical_fisher(example_loss, jnp.ones(4), 4))
    return optax.apply_updates(params, updates), state

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


@case
def fsdp_topk_no_gather_explicit():
  for strategy in (ssam_jax.fisher_mask(), ssam_jax.dynamic_mask(total_steps=9)):
    _assert_only_scalar_collectives(
        _fsdp_update_collectives(strategy, AxisType.Explicit))


@case
def fsdp_topk_no_gather_auto():
  for strategy in (ssam_jax.fisher_mask(), ssam_jax.dynamic_mask(total_steps=9)):
    _assert_only_scalar_collectives(
        _fsdp_update_collectives(strategy, AxisType.Auto))


@case
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
    assert_trees_close(actual, expected, f"top-{k}")
    assert sum(int(np.sum(a)) for a in jax.tree.leaves(actual)) == k


# --------------------------------------------------------------------------


def main(argv):
  import jax  # pylint: disable=import-outside-toplevel,redefined-outer-name
  jax.config.update("jax_num_cpu_devices", NUM_DEVICES)
  _imports()
  assert len(jax.devices()) == NUM_DEVICES, jax.devices()
  out, names = argv[0], argv[1:] or list(CASES)
  results = {}
  for name in names:
    try:
      CASES[name]()
      results[name] = "ok"
    except Exception:  # pylint: disable=broad-except
      results[name] = traceback.format_exc()
    print(name, "ok" if results[name] == "ok" else "FAILED", flush=True)
  with open(out, "w") as f:
    json.dump(results, f, indent=1)


if __name__ == "__main__":
  main(sys.argv[1:])
