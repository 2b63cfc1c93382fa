"""The arm-cost benchmark's bookkeeping: which arms share a timing, and how a
run's rows join the file (the timing itself is the benchmark's)."""

import pytest

from benchmarks import arm_cost
from experiments import sweep_arms
from experiments import sweep_readouts


def _row(ratio):
  return {"epoch_seconds_median": ratio, "epoch_seconds": [ratio], "steps": 3,
          "ratio_to_sgd": ratio}


def test_an_arm_and_its_own_rho_twin_share_a_timing():
  last_block = sweep_arms.arm("ssam-f tensorwise s=0.9 last block")
  own = sweep_arms.arm("ssam-f tensorwise s=0.9 own rho last block")
  key = sweep_readouts.cost_key("overfit", last_block)
  assert key == sweep_readouts.cost_key("overfit", own)
  every_10 = sweep_arms.arm("sam every 10 own rho")
  every_5 = sweep_arms.arm("sam every 5 own rho")
  assert len({key, sweep_readouts.cost_key("overfit", every_10),
              sweep_readouts.cost_key("overfit", every_5),
              sweep_readouts.cost_key("overfit", sweep_arms.SAM)}) == 4


def _run(command, rounds, backend="cpu"):
  return {"command": command, "backend": backend, "regime": "overfit", "rho": 0.2,
          "rounds": rounds, "method": arm_cost.METHOD, "provenance": {"cpu": "x"}}


def test_a_file_without_runs_becomes_run_zero_and_keeps_untimed_rows():
  previous = {"command": "python -m benchmarks.arm_cost", "backend": "cpu",
              "regime": "overfit", "rho": 0.2, "rounds": 5,
              "arms": {"sgd": _row(1.0), "sam": _row(1.9), "ssam-d s=0.9": _row(1.88)}}
  run = _run("python -m benchmarks.arm_cost --only sam", 3)
  out = arm_cost.merged(previous, run, {"sgd": _row(1.0), "sam": _row(1.7)})
  assert out["runs"][0] == {"method": arm_cost.LEGACY_METHOD, "command": previous["command"],
                            "backend": "cpu", "regime": "overfit", "rho": 0.2, "rounds": 5}
  assert out["runs"][1] == run
  assert out["arms"]["ssam-d s=0.9"] == {"run": 0, **_row(1.88)}
  assert out["arms"]["sam"] == {"run": 1, **_row(1.7)}
  assert set(out) == {"backend", "regime", "runs", "arms"}
  again = arm_cost.merged(out, _run("again", 4), {"sgd": _row(1.0)})
  assert [len(again["runs"]), again["arms"]["sam"]["run"], again["arms"]["sgd"]["run"]] == [3, 1, 2]


def test_costs_of_another_backend_are_not_merged():
  out = arm_cost.merged(None, _run("cpu run", 3), {"sgd": _row(1.0)})
  with pytest.raises(ValueError, match="backend 'cpu'.*'gpu'"):
    arm_cost.merged(out, _run("gpu run", 3, backend="gpu"), {"sgd": _row(1.0)})


def test_every_arm_is_timed_between_two_sgd_epochs_in_a_shuffled_order():
  keys = ["sgd"] + [f"arm{i}" for i in range(6)]
  orders = [arm_cost.round_order(keys, "sgd", r, anchor_every=4) for r in range(3)]
  for order in orders:
    assert order[0] == order[-1] == "sgd" and order.count("sgd") == 3
    assert sorted(k for k in order if k != "sgd") == keys[1:]
    assert "sgd" in order[1:6] and order.index("sgd", 1) == 5  # after four arms
  assert len({tuple(order) for order in orders}) > 1


def test_ratio_is_to_the_mean_of_the_sgd_epochs_around_the_arm():
  # Arithmetic on given numbers: nothing here is timed.
  order = ["sgd", "a", "b", "sgd", "c", "sgd"]
  given_times = [2.0, 4.0, 6.0, 4.0, 9.0, 2.0]
  assert arm_cost.local_ratios(order, given_times, "sgd") == {"a": 4 / 3, "b": 2.0, "c": 3.0}
