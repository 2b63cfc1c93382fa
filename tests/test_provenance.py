"""Run provenance, the derived record fields and ``sweep rerun``."""

import json
import pathlib
import platform
import subprocess
import sys

import jax
import pytest

from experiments import provenance
from experiments import rerun
from experiments import run_record
from experiments import sweep
from experiments import sweep_arms
from experiments import sweep_runner
import experiment_helpers as testing


def _git(repo, *args):
  subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c",
                  "user.email=t@t", *args], check=True, capture_output=True)


def test_git_state_names_the_commit_and_whether_it_is_dirty(tmp_path):
  _git(tmp_path, "init", "-q")
  (tmp_path / "a.py").write_text("x = 1\n")
  _git(tmp_path, "add", "a.py")
  _git(tmp_path, "commit", "-q", "-m", "first")
  head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"],
                        check=True, capture_output=True, text=True).stdout.strip()
  clean = provenance.git_state(tmp_path)
  assert clean == {"commit": head, "dirty": False, "changes": [], "diff_sha256": None}
  (tmp_path / "a.py").write_text("x = 2\n")
  edited = provenance.git_state(tmp_path)
  assert edited["dirty"] and edited["changes"] == [" M a.py"]
  assert len(edited["diff_sha256"]) == 64
  (tmp_path / "a.py").write_text("x = 1\n")
  (tmp_path / "new.py").write_text("")  # untracked code changes a run too
  assert provenance.git_state(tmp_path)["changes"] == ["?? new.py"]


def test_git_state_ignores_the_run_records_the_sweep_appends(tmp_path):
  _git(tmp_path, "init", "-q")
  records = tmp_path / provenance.RECORDS
  records.mkdir(parents=True)
  (records / "r_runs.jsonl").write_text("{}\n")
  (tmp_path / "a.py").write_text("x = 1\n")
  _git(tmp_path, "add", ".")
  _git(tmp_path, "commit", "-q", "-m", "first")
  (records / "r_runs.jsonl").write_text("{}\n{}\n")  # a run was recorded
  (records / "r_summary.json").write_text("{}")
  assert not provenance.git_state(tmp_path)["dirty"]


def test_git_state_without_a_repository(tmp_path):
  assert provenance.git_state(tmp_path) == {
      "commit": None, "dirty": None, "changes": None, "diff_sha256": None}


def test_collect_describes_this_process():
  config = testing.tiny_config()
  found = provenance.collect(config)
  assert len(found["commit"]) == 40 and isinstance(found["dirty"], bool)
  assert found["versions"]["jax"] == jax.__version__
  assert set(found["versions"]) >= {"jax", "jaxlib", "optax", "flax"}
  assert found["cpu"] and found["platform"] == platform.platform()
  assert found["device"]["backend"] == jax.default_backend()
  assert found["device"]["count"] == jax.device_count()
  assert found["config"]["batch_size"] == config.batch_size
  assert found["config"]["augment"]["crop_padding"] == config.augment.crop_padding
  json.dumps(found)  # plain JSON


def test_cpu_model_falls_back_to_lscpu_then_platform(monkeypatch):
  def no_file(self, *args, **kwargs):
    raise OSError("no /proc")

  monkeypatch.setattr(pathlib.Path, "read_text", no_file)
  lscpu = subprocess.CompletedProcess([], 0, "Architecture: x\nModel name:   Some CPU 9\n")
  monkeypatch.setattr(provenance.subprocess, "run", lambda *a, **k: lscpu)
  assert provenance.cpu_model() == "Some CPU 9"

  def no_lscpu(*args, **kwargs):
    raise OSError("no lscpu")

  monkeypatch.setattr(provenance.subprocess, "run", no_lscpu)
  assert provenance.cpu_model() == (platform.processor() or platform.machine())


def test_each_start_appends_and_the_record_keeps_the_first(tmp_path, monkeypatch):
  starts = iter([{"cpu": "A", "n": 1}, {"cpu": "B", "n": 2}])
  monkeypatch.setattr(provenance, "collect", lambda config: next(starts))
  assert provenance.read(tmp_path) is None
  provenance.write(str(tmp_path), None)
  assert provenance.read(tmp_path) == {"cpu": "A", "n": 1}
  provenance.write(str(tmp_path), None)
  assert provenance.read(tmp_path) == {"cpu": "A", "n": 1,
                                       "resumed": [{"cpu": "B", "n": 2}]}


def test_differences_list_what_changed():
  old = {"commit": "a", "cpu": "X", "versions": {"jax": "1"}, "time": "t1",
         "config": {"rho": 0.1, "augment": {"random_flip": False}}}
  new = {**old, "cpu": "Y", "time": "t2",
         "config": {"rho": 0.1, "augment": {"random_flip": True}, "extra": 1}}
  assert provenance.differences(old, new) == {
      "cpu": ["X", "Y"], "config.augment.random_flip": [False, True],
      "config.extra": [None, 1]}
  assert provenance.differences(old, old) == {}
  assert provenance.differences(None, new) == {"provenance": [None, "recorded"]}


def _write_run(run_dir: pathlib.Path, epochs: list[dict], cpu="X"):
  run_dir.mkdir(parents=True, exist_ok=True)
  (run_dir / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
  (run_dir / provenance.FILE).write_text(json.dumps(
      {"commit": "c", "cpu": cpu, "config": {"seed": 0}}) + "\n")


def _epochs(test=0.8, validation=0.7):
  return [{"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.6,
           "validation_accuracy": validation - 0.1, "test_accuracy": test - 0.1,
           "effective_radius": 0.1, "epoch_seconds": 3.0},
          {"epoch": 2, "train_loss": 0.25, "train_accuracy": 0.7,
           "validation_accuracy": validation, "test_accuracy": test,
           "effective_radius": 0.2, "epoch_seconds": 3.0}]


def test_derived_fields(tmp_path):
  epochs = _epochs()
  _write_run(tmp_path, epochs)
  fields = run_record.derived_fields(tmp_path, epochs)
  assert fields["early_stopped_epoch"] == 2 and not fields["early_stopped_approximate"]
  assert fields["effective_radius"] == pytest.approx(0.15)
  assert fields["provenance"]["cpu"] == "X"
  assert run_record.mean_radius([{"epoch": 1}]) == {}


@pytest.fixture
def recorded_regime(tmp_path, monkeypatch):
  """The overfit regime's SAM rho grid (best validation at rho 0.05) and one
  SGD run, recorded by ``sweep_runner.record`` from fake workdirs."""
  monkeypatch.setattr(sweep, "RESULTS", tmp_path / "results")
  monkeypatch.setattr(sweep, "RUNS", tmp_path / "runs")
  monkeypatch.setattr(rerun, "RERUNS", tmp_path / "reruns")
  (tmp_path / "results").mkdir()
  sam, sgd = sweep_arms.arm("sam"), sweep_arms.arm("sgd")
  jobs = [(sam, sweep.overrides_of("overfit", sam, rho), 0) for rho in sweep.RHO_GRID]
  jobs.append((sgd, sweep.overrides_of("overfit", sgd, 0.05), 0))
  num_epochs = sweep.regime_config("overfit").num_epochs
  for i, (arm, overrides, seed) in enumerate(jobs):
    epochs = _epochs(test=0.8 + i / 100, validation=0.8 if i == 2 else 0.7)
    for epoch in epochs:  # the sweep records finished runs only
      epoch["epoch"] += num_epochs - 2
    _write_run(sweep.workdir("overfit", overrides, seed), epochs)
    assert sweep_runner.record("overfit", arm, overrides, seed, parallel=1)
  return tmp_path


def test_records_carry_provenance_and_derived_fields(recorded_regime):
  del recorded_regime
  row = sweep.recorded_rows("overfit")[-1]
  assert row["arm"] == "sgd" and row["provenance"]["cpu"] == "X"
  assert row["early_stopped_test_accuracy"] == row["test_accuracy"]
  assert row["effective_radius"] == pytest.approx(0.15)


def test_records_are_found_by_arm_and_seed_or_by_index(recorded_regime):
  del recorded_regime
  index, record = rerun.find_record("overfit", arm="sam", seed=0)
  assert index == 2 and record["overrides"]["rho"] == 0.05  # the selected rho
  index, record = rerun.find_record("overfit", index=6)
  assert record["arm"] == "sgd"
  with pytest.raises(SystemExit, match="no record of arm 'sam' at seed 3"):
    rerun.find_record("overfit", arm="sam", seed=3)
  with pytest.raises(SystemExit, match="has 7 records"):
    rerun.find_record("overfit", index=7)
  with pytest.raises(SystemExit, match="--arm and --seed"):
    rerun.find_record("overfit", arm="sam")


def _fake_runner(epochs, test_shift=0.0, cpu="X"):
  """A stand-in for the training program that writes ``epochs`` (the last
  test accuracy shifted) and a provenance with ``cpu``."""
  calls = []

  def run_command(command, log):
    calls.append(command)
    assert log.name == "train.log"
    run_dir = pathlib.Path(command[-1].removeprefix("--workdir="))
    written = [dict(e) for e in epochs]
    written[-1]["test_accuracy"] += test_shift
    _write_run(run_dir, written, cpu=cpu)
    return 0

  return run_command, calls


def test_rerun_with_equal_results(recorded_regime, monkeypatch, capsys):
  index, record = rerun.find_record("overfit", arm="sgd", seed=0)
  fake, calls = _fake_runner(record["epochs"])
  monkeypatch.setattr(rerun, "run_command", fake)
  assert rerun.main("overfit", "sgd", 0, None) == 0
  (command,) = calls
  recorded = record["command"].split()
  assert command[0] == sys.executable
  assert [a for a in command[1:] if not a.startswith("--workdir=")] == [
      a for a in recorded if not a.startswith("--workdir=")]
  run_dir = pathlib.Path(command[-1].removeprefix("--workdir="))
  assert run_dir.parent == recorded_regime / "reruns" / "overfit"
  assert run_dir.name.startswith(f"record{index}_")
  out = capsys.readouterr().out
  assert "final metrics equal: yes; every shared per-epoch metric equal: yes" in out
  assert "provenance: the same commit" in out


def test_rerun_with_other_results_and_provenance(recorded_regime, monkeypatch, capsys):
  del recorded_regime
  _, record = rerun.find_record("overfit", index=6)
  fake, _ = _fake_runner(record["epochs"], test_shift=1e-4, cpu="Y")
  monkeypatch.setattr(rerun, "run_command", fake)
  assert rerun.main("overfit", None, None, 6) == 1
  out = capsys.readouterr().out
  assert "final metrics equal: no" in out
  assert "cpu: 'X' -> 'Y'" in out


def test_rerun_of_a_record_without_provenance(recorded_regime, monkeypatch):
  del recorded_regime
  _, record = rerun.find_record("overfit", index=6)
  del record["provenance"]
  fake, _ = _fake_runner(record["epochs"])
  monkeypatch.setattr(rerun, "run_command", fake)
  result = rerun.rerun("overfit", 6, record)
  assert result["final_equal"] and result["provenance"] == {"provenance": [None, "recorded"]}
  assert "the record has none" in rerun.report("overfit", 6, record, result)


def test_an_unfinished_rerun_is_not_equal(recorded_regime, monkeypatch):
  del recorded_regime
  _, record = rerun.find_record("overfit", index=6)
  monkeypatch.setattr(rerun, "run_command", lambda command, log: 1)
  result = rerun.rerun("overfit", 6, record)
  assert result["exit_code"] == 1 and not result["final_equal"]
  assert result["final"]["test_accuracy"] == [record["test_accuracy"], None]


@pytest.mark.slow  # a real run twice; the rerun logic above runs on every CI
@testing.requires_fashion_mnist
def test_a_real_run_records_its_radius_and_provenance_and_reruns_equal(
    tmp_path, monkeypatch):
  env = testing.main_env(str(tmp_path / "jax_cache"))
  for name in ("PYTHONPATH", "JAX_PLATFORMS", "JAX_COMPILATION_CACHE_DIR"):
    monkeypatch.setenv(name, env[name])  # the rerun's subprocess inherits them
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  monkeypatch.setattr(rerun, "RERUNS", tmp_path / "reruns")
  workdir = tmp_path / "run"
  command = testing.main_command(workdir, optimizer="ssam-random", rho=0.2,
                                 sparsity=0.5, num_epochs=1)
  subprocess.run(command, check=True, cwd=testing.REPO_ROOT, env=env,
                 capture_output=True)
  epochs = [json.loads(line) for line in
            (workdir / "metrics.jsonl").read_text().splitlines()]
  # Half the entries of eps = rho (m * g) / ||g||: 0 < ||eps|| < rho.
  assert all(0 < e["effective_radius"] < 0.2 for e in epochs)
  found = provenance.read(workdir)
  assert found["config"]["optimizer"] == "ssam-random"
  assert found["device"]["backend"] == "cpu" and found["argv"][-1] != ""
  record = {"arm": "ssam-random", "seed": 0, "overrides": {},
            "command": " ".join(command[1:]), "epochs": epochs,
            "provenance": found,
            **{key: epochs[-1].get(key) for key in rerun.FINAL_METRICS}}
  result = rerun.rerun("overfit", 0, record)
  assert result["exit_code"] == 0
  assert result["final_equal"] and result["epochs_equal"], result["final"]
  # Only the working tree may differ (others may edit it meanwhile).
  assert set(result["provenance"]) <= {"dirty", "changes", "diff_sha256"}
