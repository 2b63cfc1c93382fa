r"""Data-parallel SSAM-F across processes (CPU, loopback): a scale-out check.

Every process owns some devices; together they form one ``data`` mesh over
all devices, the batch is split across them, and the parameters are
replicated. Two processes with 2 CPU devices each::

  python -m experiments.multiprocess --process-id 0 --num-processes 2 \
      --coordinator 127.0.0.1:12345 --steps 3 --out /tmp/two.npz &
  python -m experiments.multiprocess --process-id 1 --num-processes 2 \
      --coordinator 127.0.0.1:12345 --steps 3 --out /tmp/two.npz

reach the parameters of one process with 4 devices::

  python -m experiments.multiprocess --num-processes 1 --steps 3 --out /tmp/one.npz

On GPU or TPU hosts drop ``--devices-per-process``: each process then uses
its local accelerators. Only process 0 writes ``--out``: the final params and
mask (keys ``params/...`` and ``mask/...``), which are replicated.

The model is a small MLP on synthetic data (a fixed random batch), so the
run is exactly reproducible; the same step works for any model.
"""

import argparse
import sys

import numpy as np

TOTAL_DEVICES = 4
BATCH, FEATURES, HIDDEN, CLASSES = 64, 8, 16, 4


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--process-id", type=int, default=0)
  parser.add_argument("--num-processes", type=int, default=1)
  parser.add_argument("--coordinator", default="127.0.0.1:12345",
                      help="host:port of process 0 (ignored for 1 process).")
  parser.add_argument("--devices-per-process", type=int, default=None,
                      help="CPU devices per process; default "
                      f"{TOTAL_DEVICES} / num_processes.")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--out", required=True, help="Output .npz path.")
  args = parser.parse_args(argv)
  if args.devices_per_process is None:
    if TOTAL_DEVICES % args.num_processes:
      parser.error(f"{TOTAL_DEVICES} devices do not split over "
                   f"{args.num_processes} processes.")
    args.devices_per_process = TOTAL_DEVICES // args.num_processes
  return args


def start_jax(args):
  """Sets the device count and joins the other processes (before any JAX use)."""
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_platforms", "cpu")
  jax.config.update("jax_num_cpu_devices", args.devices_per_process)
  if args.num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=args.coordinator,
                               num_processes=args.num_processes,
                               process_id=args.process_id,
                               initialization_timeout=120)
  return jax


def init_params(jax, seed=0):
  keys = jax.random.split(jax.random.key(seed), 2)
  return {
      "dense1": {"kernel": jax.random.normal(keys[0], (FEATURES, HIDDEN)) * 0.5,
                 "bias": np.zeros(HIDDEN, np.float32)},
      "dense2": {"kernel": jax.random.normal(keys[1], (HIDDEN, CLASSES)) * 0.5,
                 "bias": np.zeros(CLASSES, np.float32)},
  }


def global_batch(seed=1):
  """The same synthetic batch on every process (NumPy, host memory)."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(BATCH, FEATURES)).astype(np.float32)
  y = rng.integers(0, CLASSES, size=BATCH).astype(np.int32)
  return {"x": x, "y": y}


def make_loss(jax):
  jnp = jax.numpy

  def loss(params, batch):
    h = jnp.tanh(batch["x"] @ params["dense1"]["kernel"] + params["dense1"]["bias"])
    logits = h @ params["dense2"]["kernel"] + params["dense2"]["bias"]
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, batch["y"][:, None], axis=1))

  def example_loss(params, example):
    return loss(params, jax.tree.map(lambda a: a[None], example))

  return loss, example_loss


def make_optimizer():
  import optax  # pylint: disable=import-outside-toplevel
  import ssam_jax  # pylint: disable=import-outside-toplevel
  return ssam_jax.ssam(optax.sgd(0.1, momentum=0.9), rho=0.1, sparsity=0.5,
                       mask=ssam_jax.fisher_mask(), mask_update_every=2)


def run(args):
  jax = start_jax(args)
  import optax  # pylint: disable=import-outside-toplevel
  import ssam_jax  # pylint: disable=import-outside-toplevel
  from jax.sharding import AxisType, NamedSharding, PartitionSpec as P  # pylint: disable=import-outside-toplevel

  if jax.device_count() != TOTAL_DEVICES:
    raise SystemExit(f"expected {TOTAL_DEVICES} devices in all, got "
                     f"{jax.device_count()}.")
  mesh = jax.make_mesh((TOTAL_DEVICES,), ("data",), axis_types=(AxisType.Auto,))
  replicated = NamedSharding(mesh, P())
  by_example = NamedSharding(mesh, P("data"))

  def put_replicated(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, replicated, lambda i: x[i])

  # Each process contributes its own rows of the global batch.
  host = global_batch()
  rows = BATCH // jax.process_count()
  local = jax.tree.map(
      lambda a: a[jax.process_index() * rows:(jax.process_index() + 1) * rows],
      host)
  batch = jax.tree.map(
      lambda a, full: jax.make_array_from_process_local_data(
          by_example, a, full.shape), local, host)

  opt = make_optimizer()
  loss, example_loss = make_loss(jax)
  params = jax.tree.map(put_replicated, init_params(jax))
  state = jax.tree.map(put_replicated, opt.init(init_params(jax)))

  @jax.jit
  def train_step(params, state, batch):
    grads = jax.grad(loss)(params, batch)
    updates, state = opt.update(
        grads, state, params, grad_fn=lambda p: jax.grad(loss)(p, batch),
        fisher_fn=ssam_jax.empirical_fisher(example_loss, batch,
                                            num_samples=BATCH))
    return optax.apply_updates(params, updates), state

  for _ in range(args.steps):
    params, state = train_step(params, state, batch)

  def host_value(x):
    assert x.sharding.is_fully_replicated, x.sharding
    return np.asarray(x.addressable_data(0))

  result = {}
  for prefix, tree in (("params", params), ("mask", state.mask)):
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      name = "/".join(str(getattr(k, "key", k)) for k in path)
      result[f"{prefix}/{name}"] = host_value(leaf)
  if jax.process_index() == 0:
    np.savez(args.out, **result)
  print(f"process {jax.process_index()}/{jax.process_count()}: "
        f"{jax.local_device_count()} local devices, {args.steps} steps, "
        f"loss {float(loss(params, batch)):.6f}", flush=True)
  if args.num_processes > 1:
    jax.distributed.shutdown()


def main(argv=None):
  run(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
  main()
