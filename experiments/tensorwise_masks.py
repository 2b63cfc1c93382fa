r"""What each tensor-wise arm of the sweeps perturbs: its tensors, measured.

  python -m experiments.tensorwise_masks --regime overfit   # or label_noise, augmented

A run records how much of the network its mask perturbs (``mask_density``,
every epoch), not which tensors. A tensor-wise arm perturbs whole leaves,
chosen within a parameter budget, so its budget (``s=0.9``) says little:
at 90 % sparsity the small CNN's largest convolutions never fit, and what
is perturbed is the set of small leaves. This command measures that set:
for each tensor-wise arm of the regime it builds the training program of
the arm's recorded seed-0 run (same config, overrides, data and seed), takes
the first step, which selects the mask, and lists the leaves the mask
perturbs (``ssam_jax.perturbed_tensors``). It writes them, with the size of
every leaf of the model, to ``experiments/results/tensorwise_masks.json``.

:func:`perturbs` joins that file with the records: it checks that the
measured tensors add up to the density every epoch of every seed recorded,
and says what the arm perturbs in words (:func:`describe`), the text of the
arm's display label (``sweep_arms.Arm.display_label``).
"""

import argparse
import json
import pathlib
import re
import sys
import tempfile
from collections.abc import Sequence

MASKS_FILE = pathlib.Path("experiments/results/tensorwise_masks.json")
# Recorded densities are float32 sums; the measured one is a ratio of sizes.
DENSITY_TOLERANCE = 1e-6


def _module(path: str) -> str:
  return path.rsplit("/", 1)[0] if "/" in path else path


def _kind(module: str) -> str:
  """``"BasicBlock_7/BatchNorm_0"`` -> ``"BatchNorm"`` (Flax's automatic names)."""
  return re.sub(r"_\d+$", "", module.rsplit("/", 1)[-1])


def describe(tensors: Sequence[str], leaves: Sequence[str]) -> str:
  """The perturbed leaves in words, by module kind.

  A module counts when all its leaves are perturbed. Per kind: ``"all
  BatchNorm"`` when every module of that kind is (more than one), the module
  names when one or two are, ``"10 of 21 Conv"`` otherwise; leaves of a
  module perturbed only in part are named one by one.

  Args:
    tensors: the perturbed leaves, as ``"Module_0/kernel"`` paths.
    leaves: every leaf path of the model, in the params' order.

  Returns:
    For example ``"all BatchNorm + Conv_0 + Dense_0"``, or ``"nothing"``.
  """
  perturbed = set(tensors)
  unknown = perturbed - set(leaves)
  if unknown:
    raise ValueError(f"tensors {sorted(unknown)} are not leaves of the model.")
  modules: dict[str, list[str]] = {}
  for path in leaves:
    modules.setdefault(_module(path), []).append(path)
  kinds: dict[str, tuple[list[str], list[str]]] = {}
  partial = []
  for module, paths in modules.items():
    every, chosen = kinds.setdefault(_kind(module), ([], []))
    every.append(module)
    if all(path in perturbed for path in paths):
      chosen.append(module)
    else:
      partial += [path for path in paths if path in perturbed]
  parts = []
  for kind, (every, chosen) in kinds.items():
    if len(chosen) == len(every) > 1:
      parts.append(f"all {kind}")
    elif len(chosen) <= 2:
      parts += chosen
    else:
      parts.append(f"{len(chosen)} of {len(every)} {kind}")
  return " + ".join(parts + partial) or "nothing"


def percent(fraction: float) -> str:
  """``0.00827 -> "0.827 %"``: three significant digits."""
  return f"{100 * fraction:.3g} %"


def density(tensors: Sequence[str], sizes: dict[str, int]) -> float:
  """The fraction of the parameters in ``tensors`` (``sizes``: every leaf's)."""
  return sum(sizes[path] for path in tensors) / sum(sizes.values())


def recorded_density(rows: Sequence[dict]) -> float:
  """The ``mask_density`` that every epoch of every row records.

  Raises:
    ValueError: the rows record no density, or different ones (the arm's
      tensors then change during training and no single label fits).
  """
  values = [epoch["mask_density"] for row in rows for epoch in row["epochs"]
            if "mask_density" in epoch]
  if not values:
    raise ValueError("the rows record no mask_density.")
  if max(values) - min(values) > DENSITY_TOLERANCE:
    raise ValueError(f"the rows record mask densities from {min(values)} to "
                     f"{max(values)}: the perturbed tensors change.")
  return values[0]


def load(path: pathlib.Path = MASKS_FILE) -> dict:
  return json.loads(path.read_text()) if path.exists() else {"regimes": {}}


def perturbs(regime: str, rows_by_arm: dict[str, list[dict]],
             masks: dict | None = None) -> dict[str, str]:
  """``{label: "BatchNorm_2 + Dense_0, 0.827 %"}`` for each tensor-wise arm
  with rows, from the measured tensors and the recorded density.

  Raises:
    ValueError: an arm has no measurement, or its measured tensors do not
      add up to the density its runs record.
  """
  from experiments import sweep_arms  # pylint: disable=g-import-not-at-top
  measured = (masks or load())["regimes"].get(regime, {})
  out = {}
  for label, rows in rows_by_arm.items():
    if not rows or not sweep_arms.arm(label).tensorwise:
      continue
    entry = measured.get("arms", {}).get(label)
    if entry is None:
      raise ValueError(f"{regime} {label!r}: no measured tensors in {MASKS_FILE}; run "
                       f"`python -m experiments.tensorwise_masks --regime {regime}`.")
    sizes = measured["leaves"]
    recorded, found = recorded_density(rows), density(entry["tensors"], sizes)
    if abs(recorded - found) > DENSITY_TOLERANCE:
      raise ValueError(f"{regime} {label!r}: the measured tensors hold {found:.6f} of "
                       f"the parameters, the runs record {recorded:.6f}.")
    out[label] = f"{describe(entry['tensors'], list(sizes))}, {percent(recorded)}"
  return out


def display_labels(regime: str, rows_by_arm: dict[str, list[dict]],
                   masks: dict | None = None) -> dict[str, str]:
  """Every arm's display label by its label (``sweep_arms.Arm.display_label``)."""
  from experiments import sweep_arms  # pylint: disable=g-import-not-at-top
  measured = perturbs(regime, rows_by_arm, masks)
  return {label: sweep_arms.arm(label).display_label(measured.get(label))
          for label in rows_by_arm}


def measure(config) -> dict:
  """The leaves the mask of ``config``'s training program perturbs after its
  first step, and every leaf's size."""
  import jax  # pylint: disable=g-import-not-at-top
  import ssam_jax  # pylint: disable=g-import-not-at-top
  from ssam_jax import leaf_filters  # pylint: disable=g-import-not-at-top
  from experiments import distributed  # pylint: disable=g-import-not-at-top
  from experiments import train  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as workdir:
    trainer = train.Trainer(config, workdir)
    with jax.set_mesh(trainer.data_parallel.mesh):
      state = trainer.initial_state()
      batch = next(iter(trainer.pipeline.train_batches(
          trainer.train_split, config, 0, 0,
          distributed.process_rows(config.batch_size))))
      state, _ = trainer.step(state, trainer.data_parallel.global_batch(batch), 0)
      active = ssam_jax.perturbed_tensors(state.opt_state)
      paths = leaf_filters.leaf_paths(state.params)
      return {"tensors": [p for p, a in zip(paths, active) if a],
              "mask_density": train.mask_density(state.opt_state),
              "leaves": {p: int(x.size) for p, x in zip(
                  paths, jax.tree.leaves(state.params))}}


def measure_regime(regime: str, path: pathlib.Path = MASKS_FILE) -> dict:
  """Measures every tensor-wise arm of ``regime`` from its recorded seed-0
  run (the first recorded seed if it has none) and updates ``path``."""
  from experiments import sweep  # pylint: disable=g-import-not-at-top
  from experiments import sweep_arms  # pylint: disable=g-import-not-at-top
  masks = load(path)
  masks["about"] = __doc__.split("\n")[0] + " See experiments/tensorwise_masks.py."
  entry = masks["regimes"].setdefault(regime, {"arms": {}})
  for label, rows in sweep.rows_by_arm(regime).items():
    if not rows or not sweep_arms.arm(label).tensorwise:
      continue
    row = min(rows, key=lambda r: r["seed"])
    config = sweep.regime_config(regime)
    for key, value in {**row["overrides"], "seed": row["seed"]}.items():
      config[key] = value
    found = measure(config)
    entry["leaves"] = found.pop("leaves")
    entry["arms"][label] = {"seed": row["seed"], "step": 1, **found}
    print(f"{regime} {label}: {describe(found['tensors'], list(entry['leaves']))}")
  entry["command"] = f"python -m experiments.tensorwise_masks --regime {regime}"
  path.write_text(json.dumps(masks, indent=1) + "\n")
  return masks


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--regime", choices=("overfit", "label_noise", "augmented"),
                      required=True)
  args = parser.parse_args(argv)
  measure_regime(args.regime)


if __name__ == "__main__":
  main(sys.argv[1:])
