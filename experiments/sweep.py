r"""The Fashion-MNIST evidence sweep: every optimizer, 3 seeds, resumable.

  python -m experiments.sweep run [--parallel 2] [--only sgd,sam] [--seed-major]
  python -m experiments.sweep table
  python -m experiments.analysis.accuracy_vs_sparsity --out experiments/results/figures \
      --dataset "Fashion-MNIST, small CNN, 10 epochs" --run $(python -m experiments.sweep runs)

``run`` trains each (setting, seed) of ``SETTINGS`` with the
``fashion_mnist_small`` config in ``runs/sweep/<setting>/seed<k>``, most
important settings first, skipping finished runs and resuming killed ones
(each run checkpoints every 100 steps). Each finished run is appended, with
its per-epoch metrics, to ``experiments/results/fashion_mnist_sweep.jsonl``.
``table`` prints mean +- std over seeds as Markdown; ``runs`` prints the
``OPT[@SPARSITY]=PATH`` arguments of every recorded run without label noise or
a longer schedule, the input of Fig. 3.
"""

import argparse
import concurrent.futures
import json
import pathlib
import statistics
import subprocess
import sys

CONFIG = "experiments/configs/fashion_mnist_small.py"
RUNS = pathlib.Path("runs/sweep")
RESULTS = pathlib.Path("experiments/results/fashion_mnist_sweep.jsonl")
SEEDS = (0, 1, 2)
NUM_EPOCHS = 10

TENSORWISE = {"pattern": "tensorwise", "normalize": "masked", "fast_path": True}

# name: config overrides. Order = priority.
SETTINGS = {
    "sgd": {"optimizer": "sgd"},
    "sam": {"optimizer": "sam"},
    "ssam-f s=0.5": {"optimizer": "ssam-f", "sparsity": 0.5},
    "ssam-d s=0.5": {"optimizer": "ssam-d", "sparsity": 0.5},
    "random s=0.5": {"optimizer": "random", "sparsity": 0.5},
    "ssam-f s=0.9": {"optimizer": "ssam-f", "sparsity": 0.9},
    "ssam-d s=0.9": {"optimizer": "ssam-d", "sparsity": 0.9},
    "random s=0.9": {"optimizer": "random", "sparsity": 0.9},
    "ssam-f s=0.99": {"optimizer": "ssam-f", "sparsity": 0.99},
    "ssam-d s=0.99": {"optimizer": "ssam-d", "sparsity": 0.99},
    "sgd 2x epochs": {"optimizer": "sgd", "num_epochs": 2 * NUM_EPOCHS},
    "noise0.4 sgd": {"optimizer": "sgd", "label_noise": 0.4},
    "noise0.4 sam": {"optimizer": "sam", "label_noise": 0.4},
    "noise0.4 ssam-f s=0.5": {"optimizer": "ssam-f", "sparsity": 0.5, "label_noise": 0.4},
    "noise0.4 ssam-d s=0.5": {"optimizer": "ssam-d", "sparsity": 0.5, "label_noise": 0.4},
    # Issue 6's accuracy rows: whole tensors chosen by Fisher, the fast path.
    "ssam-f tensorwise s=0.5": {"optimizer": "ssam-f", "sparsity": 0.5, **TENSORWISE},
    "ssam-f tensorwise s=0.9": {"optimizer": "ssam-f", "sparsity": 0.9, **TENSORWISE},
    # The fast path's <= 1.5x regime: the Fisher choice confined to the last block.
    "ssam-f tensorwise s=0.9 last block": {"optimizer": "ssam-f", "sparsity": 0.9, **TENSORWISE,
                                           "perturbed_leaves": "^(Conv_2|BatchNorm_2|Dense_0)/"},
}


def workdir(setting: str, seed: int) -> pathlib.Path:
  return RUNS / setting.replace(" ", "_").replace("=", "") / f"seed{seed}"


def command(setting: str, seed: int) -> list[str]:
  overrides = {"seed": seed, **SETTINGS[setting]}
  return [sys.executable, "-m", "experiments.main", f"--config={CONFIG}",
          f"--workdir={workdir(setting, seed)}"] + [
              f"--config.{key}={value}" for key, value in overrides.items()]


def epochs_of(setting: str, seed: int) -> list[dict]:
  metrics = workdir(setting, seed) / "metrics.jsonl"
  if not metrics.exists():
    return []
  return [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]


def is_finished(setting: str, seed: int) -> bool:
  epochs = epochs_of(setting, seed)
  wanted = SETTINGS[setting].get("num_epochs", NUM_EPOCHS)
  return bool(epochs) and epochs[-1]["epoch"] >= wanted


def recorded_rows() -> list[dict]:
  """Every finished run appended to ``RESULTS``, in order."""
  if not RESULTS.exists():
    return []
  return [json.loads(line) for line in RESULTS.read_text().splitlines()]


def recorded() -> set:
  return {(r["setting"], r["seed"]) for r in recorded_rows()}


def record(setting: str, seed: int) -> None:
  epochs = epochs_of(setting, seed)
  row = {"setting": setting, "seed": seed, "overrides": SETTINGS[setting],
         "test_accuracy": epochs[-1]["test_accuracy"],
         "train_loss": epochs[-1]["train_loss"],
         "mean_epoch_seconds": statistics.fmean(e["epoch_seconds"] for e in epochs),
         "command": " ".join(command(setting, seed)[1:]), "epochs": epochs}
  RESULTS.parent.mkdir(parents=True, exist_ok=True)
  with RESULTS.open("a") as out:
    out.write(json.dumps(row) + "\n")


def train(setting: str, seed: int) -> tuple[str, int, int]:
  log = workdir(setting, seed) / "train.log"
  log.parent.mkdir(parents=True, exist_ok=True)
  with log.open("a") as out:
    code = subprocess.call(command(setting, seed), stdout=out, stderr=subprocess.STDOUT)
  return setting, seed, code


def run(parallel: int, only: list[str], seed_major: bool = False) -> None:
  todo = [(s, seed) for s in SETTINGS if not only or s in only for seed in SEEDS]
  if seed_major:  # Every setting gets seeds 0 and 1 before any gets seed 2.
    todo.sort(key=lambda job: job[1] >= 2)
  done = recorded()
  for setting, seed in todo:  # Finished earlier but never recorded.
    if (setting, seed) not in done and is_finished(setting, seed):
      record(setting, seed)
  pending = [(s, seed) for s, seed in todo if (s, seed) not in recorded()]
  with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
    for setting, seed, code in pool.map(lambda job: train(*job), pending):
      if code == 0 and is_finished(setting, seed):
        record(setting, seed)
        print(f"recorded {setting} seed {seed}", flush=True)
      else:
        print(f"FAILED {setting} seed {seed} (exit {code}); see its train.log", flush=True)


def table() -> str:
  rows = recorded_rows()
  lines = ["| setting | seeds | test accuracy (%) | s / epoch |", "| --- | ---: | ---: | ---: |"]
  for setting in SETTINGS:
    runs = [r for r in rows if r["setting"] == setting]
    if not runs:
      continue
    accuracy = [100 * r["test_accuracy"] for r in runs]
    seconds = [r["mean_epoch_seconds"] for r in runs]
    spread = f" ± {statistics.stdev(accuracy):.2f}" if len(runs) > 1 else ""
    lines.append(f"| {setting} | {len(runs)} | {statistics.fmean(accuracy):.2f}{spread} | "
                 f"{statistics.fmean(seconds):.1f} |")
  return "\n".join(lines)


def figure_runs() -> list[str]:
  """``OPT[@SPARSITY]=PATH`` of each recorded run on the standard schedule."""
  specs = []
  for row in recorded_rows():
    overrides = row["overrides"]
    if set(overrides) - {"optimizer", "sparsity", *TENSORWISE}:
      continue  # label noise or a longer schedule: not on the sparsity axis
    label = overrides["optimizer"]
    if overrides.get("pattern") == "tensorwise":
      label += "-tensorwise"
    if "sparsity" in overrides:
      label += f"@{overrides['sparsity']}"
    specs.append(f"{label}={workdir(row['setting'], row['seed'])}")
  return specs


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("action", choices=("run", "table", "runs"))
  parser.add_argument("--parallel", type=int, default=1)
  parser.add_argument("--only", default="", help="comma-separated setting names")
  parser.add_argument("--seed-major", action="store_true",
                      help="run seeds 0-1 of every setting before any seed 2")
  args = parser.parse_args(argv)
  if args.action == "run":
    run(args.parallel, [s for s in args.only.split(",") if s], args.seed_major)
  print(" ".join(figure_runs()) if args.action == "runs" else table())


if __name__ == "__main__":
  main()
