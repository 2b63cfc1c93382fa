r"""Reruns a recorded sweep run and compares the result with its record.

  python -m experiments.sweep rerun --regime label_noise --arm sam --seed 0
  python -m experiments.sweep rerun --regime label_noise --index 12

A record is chosen by arm and seed (the arm's run at the regime's selected
rho, as in the summary) or by its position in the regime's results file
(``--index``, 0-based: any record, rho grid runs included). Its recorded
command runs again into a fresh workdir under ``runs/reruns/``; then the
recorded and the new final metrics are printed side by side, with whether
they are equal (exactly: the same digits), whether every metric the two
runs share is equal at every epoch, and how the provenance differs (commit,
library versions, CPU, device, config; see ``experiments.provenance``).
Records written before provenance was kept have none to compare with. The
exit status is 0 when the final metrics are equal and 1 otherwise.
"""

import datetime
import json
import pathlib
import subprocess
import sys
import time

from experiments import provenance
from experiments import sweep

RERUNS = pathlib.Path("runs/reruns")
FINAL_METRICS = ("test_accuracy", "validation_accuracy", "train_accuracy",
                 "train_loss")


def find_record(regime: str, arm: str | None = None, seed: int | None = None,
                index: int | None = None) -> tuple[int, dict]:
  """``(index, record)`` of the record asked for; SystemExit if none."""
  rows = sweep.recorded_rows(regime)
  where = sweep.results_file(regime)
  if index is not None:
    if not 0 <= index < len(rows):
      raise SystemExit(f"--index {index}: {where} has {len(rows)} records "
                       f"(0 to {len(rows) - 1}).")
    return index, rows[index]
  if arm is None or seed is None:
    raise SystemExit("rerun needs --index, or --arm and --seed.")
  row = next((r for r in sweep.rows_by_arm(regime).get(arm, [])
              if r["seed"] == seed), None)
  if row is None:
    raise SystemExit(f"no record of arm {arm!r} at seed {seed} in {where} "
                     "(at the selected rho); other runs are chosen by --index.")
  return rows.index(row), row


def rerun_command(record: dict, run_dir: pathlib.Path) -> list[str]:
  """The recorded command, with the fresh ``run_dir`` as its workdir."""
  args = [arg for arg in record["command"].split()
          if not arg.startswith("--workdir=")]
  return [sys.executable, *args, f"--workdir={run_dir}"]


def run_command(command: list[str], log: pathlib.Path) -> int:
  """Runs ``command``, its output to ``log``; returns the exit status."""
  with log.open("w") as out:
    return subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)


def _epochs(run_dir: pathlib.Path) -> list[dict]:
  path = run_dir / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line]


def _epochs_equal(recorded: list[dict], new: list[dict]) -> bool:
  """Every metric both runs logged, timings aside, equal at every epoch."""
  if [e["epoch"] for e in recorded] != [e["epoch"] for e in new]:
    return False
  return all(old[key] == now[key] for old, now in zip(recorded, new)
             for key in old.keys() & now.keys() if not key.endswith("seconds"))


def rerun(regime: str, index: int, record: dict) -> dict:
  """Reruns ``record`` (number ``index`` of ``regime``'s results file).

  Returns:
    ``{"run_dir", "exit_code", "seconds", "final": {metric: [recorded,
    new]}, "final_equal", "epochs_equal", "provenance": {key: [recorded,
    new]}}``; ``final_equal`` is False when the rerun did not finish.
  """
  stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
  run_dir = RERUNS / regime / f"record{index}_{stamp}"
  run_dir.mkdir(parents=True)
  start = time.perf_counter()
  code = run_command(rerun_command(record, run_dir), run_dir / "train.log")
  seconds = time.perf_counter() - start
  epochs = _epochs(run_dir)
  last = epochs[-1] if epochs else {}
  final = {key: [record.get(key), last.get(key)] for key in FINAL_METRICS}
  finished = code == 0 and bool(epochs) and (
      epochs[-1]["epoch"] == record["epochs"][-1]["epoch"])
  return {"run_dir": str(run_dir), "exit_code": code, "seconds": seconds,
          "final": final,
          "final_equal": finished and all(old == new for old, new in final.values()),
          "epochs_equal": finished and _epochs_equal(record["epochs"], epochs),
          "provenance": provenance.differences(record.get("provenance"),
                                               provenance.read(run_dir))}


def report(regime: str, index: int, record: dict, result: dict) -> str:
  """The comparison as printed by ``sweep rerun``."""
  yes = lambda flag: "yes" if flag else "no"
  lines = [f"record {index} of {sweep.results_file(regime)}: {record['arm']} "
           f"seed {record['seed']} {record['overrides']}",
           f"rerun in {result['run_dir']} (exit {result['exit_code']}, "
           f"{result['seconds']:.0f} s)",
           f"  {'metric':20s} {'recorded':>20s} {'rerun':>20s}  equal"]
  for key, (old, new) in result["final"].items():
    lines.append(f"  {key:20s} {old!r:>20} {new!r:>20}  {yes(old == new)}")
  lines.append(f"final metrics equal: {yes(result['final_equal'])}; every "
               f"shared per-epoch metric equal: {yes(result['epochs_equal'])}")
  differences = result["provenance"]
  if "provenance" in differences:
    recorded, new = differences["provenance"]
    lines.append("provenance: " + ("the record has none (recorded before "
                                   "provenance was kept)" if not recorded else
                                   "the rerun wrote none"))
  elif differences:
    lines.append("provenance differences (recorded -> rerun):")
    lines += [f"  {key}: {old!r} -> {new!r}" for key, (old, new) in differences.items()]
  else:
    lines.append("provenance: the same commit, versions, CPU, device and config")
  return "\n".join(lines)


def main(regime: str, arm: str | None, seed: int | None,
         index: int | None) -> int:
  index, record = find_record(regime, arm, seed, index)
  result = rerun(regime, index, record)
  print(report(regime, index, record, result))
  return 0 if result["final_equal"] else 1
