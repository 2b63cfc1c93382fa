"""Damaged checkpoints, config changes on resume, divergence and the workdir lock.

Tiny in-process runs on real Fashion-MNIST with SAM (the cheapest optimizer
to compile; what is tested does not depend on it). One 2-epoch run
(checkpoints at steps 12 and 16 kept) is trained once per module and copied
into each test.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import checkpointing
from experiments import divergence
from experiments import models
from experiments import train
from experiments import workdir_guard
import experiment_helpers as testing
import numerics

# 8 steps per epoch; with 2 checkpoints kept, steps 12 and 16 remain.
RUN = dict(optimizer="sam", num_epochs=2, checkpoint_every_steps=4)


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory):
  """A persistent compilation cache for this module's runs: each run builds
  new jitted steps, which then load instead of compiling again."""
  from jax._src import compilation_cache as cache  # pylint: disable=g-import-not-at-top
  previous = jax.config.jax_compilation_cache_dir
  jax.config.update("jax_compilation_cache_dir",
                    str(tmp_path_factory.mktemp("jax_cache")))
  cache.reset_cache()  # the cache directory is read once per process
  yield
  jax.config.update("jax_compilation_cache_dir", previous)
  cache.reset_cache()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, compilation_cache):
  del compilation_cache
  workdir = tmp_path_factory.mktemp("trained") / "run"
  train.train_and_evaluate(testing.tiny_config(**RUN), str(workdir))
  assert checkpointing.saved_steps(str(workdir / "checkpoints")) == [12, 16]
  return workdir


@pytest.fixture
def workdir(trained, tmp_path):
  copy = tmp_path / "run"
  shutil.copytree(trained, copy)
  return copy


def _largest_data_file(step_directory) -> str:
  files = glob.glob(os.path.join(step_directory, "state", "**", "d", "*"),
                    recursive=True)
  return max(files, key=os.path.getsize)


def _flip_bytes(step_directory) -> None:
  path = _largest_data_file(step_directory)
  data = bytearray(open(path, "rb").read())
  middle = len(data) // 2
  data[middle:middle + 256] = bytes(b ^ 0xFF for b in data[middle:middle + 256])
  with open(path, "wb") as f:
    f.write(data)


def _truncate(step_directory) -> None:
  path = _largest_data_file(step_directory)
  os.truncate(path, os.path.getsize(path) // 2)


def _interrupt_save(step_directory) -> None:
  os.remove(os.path.join(step_directory, checkpointing.CHECKSUM_FILE))


DAMAGE = {"flipped bytes": _flip_bytes, "truncated": _truncate,
          "interrupted save": _interrupt_save}


def _lines(text: str) -> list[str]:
  return [line for line in text.replace("\r", "\n").splitlines() if line]


def _assert_same_state(workdir_a, workdir_b) -> None:
  step_a, state_a = testing.final_checkpoint(str(workdir_a))
  step_b, state_b = testing.final_checkpoint(str(workdir_b))
  assert step_a == step_b
  assert jax.tree.structure(state_a) == jax.tree.structure(state_b)
  for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b)):
    np.testing.assert_array_equal(a, b)


@testing.requires_fashion_mnist
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(
    workdir, trained, damage, capsys):
  DAMAGE[damage](workdir / "checkpoints" / "16")
  train.train_and_evaluate(testing.tiny_config(**RUN), str(workdir))
  captured = capsys.readouterr()
  warnings = [line for line in _lines(captured.err)
              if line.startswith("Warning:")]
  assert len(warnings) == 1, captured.err
  assert "Checkpoint step 16 is not intact" in warnings[0]
  assert "resuming from step 12" in warnings[0]
  assert "Resumed from step 12" in captured.out
  assert len(os.listdir(workdir / "rejected_checkpoints")) == 1
  # Steps 13-16 trained again from the intact checkpoint: the damaged one
  # was not used, and the result is the undamaged run's.
  _assert_same_state(workdir, trained)


@testing.requires_fashion_mnist
def test_no_intact_checkpoint_stops_with_a_clear_message(workdir):
  _flip_bytes(workdir / "checkpoints" / "16")
  _truncate(workdir / "checkpoints" / "12")
  before = {name: (workdir / name).read_text()
            for name in ("config.json", "metrics.jsonl")}
  with pytest.raises(checkpointing.NoIntactCheckpointError) as error:
    train.train_and_evaluate(testing.tiny_config(**RUN), str(workdir))
  message = str(error.value)
  assert "\n" not in message
  assert "step 16: " in message and "does not match its SHA-256" in message
  assert "step 12: " in message and "bytes" in message
  assert checkpointing.saved_steps(str(workdir / "checkpoints")) == [12, 16]
  assert not (workdir / "rejected_checkpoints").exists()
  assert before == {name: (workdir / name).read_text() for name in before}


@testing.requires_fashion_mnist
def test_checkpoints_without_any_checksums_resume_with_a_warning(workdir,
                                                                 capsys):
  """Checkpoints written before checksums existed stay usable."""
  for step in (12, 16):
    _interrupt_save(workdir / "checkpoints" / str(step))
  train.train_and_evaluate(testing.tiny_config(**RUN), str(workdir))
  captured = capsys.readouterr()
  warnings = [line for line in _lines(captured.err)
              if line.startswith("Warning:")]
  assert len(warnings) == 1 and "have no checksums" in warnings[0]
  assert "Resumed from step 16" in captured.out


@testing.requires_fashion_mnist
@pytest.mark.parametrize("changes, keys", [
    (dict(learning_rate=0.1, rho=0.5), ["learning_rate", "rho"]),
    (dict(optimizer="ssam-f"), ["optimizer"]),
])
def test_resume_with_another_config_is_refused(workdir, changes, keys):
  changes = {**RUN, **changes}
  before = {name: (workdir / name).read_text()
            for name in ("config.json", "config_history.jsonl")}
  with pytest.raises(workdir_guard.ConfigMismatchError) as error:
    train.train_and_evaluate(testing.tiny_config(**changes), str(workdir))
  message = str(error.value)
  for key in keys:
    assert f"{key}: " in message
  assert f"--allow_config_change={','.join(keys)}" in message
  assert before == {name: (workdir / name).read_text() for name in before}


@testing.requires_fashion_mnist
def test_allowed_config_change_is_recorded(workdir):
  shutil.rmtree(workdir / "checkpoints" / "16")  # resume from step 12
  changes = {"checkpoint_every_steps": 3, "log_every_steps": 2}
  train.train_and_evaluate(testing.tiny_config(**{**RUN, **changes}),
                           str(workdir), allow_config_change=list(changes))
  history = [json.loads(line) for line in
             (workdir / "config_history.jsonl").read_text().splitlines()]
  assert len(history) == 2
  assert history[-1]["resumed_from_step"] == 12
  assert history[-1]["changed"] == {"checkpoint_every_steps": [4, 3],
                                    "log_every_steps": [4, 2]}
  config = json.loads((workdir / "config.json").read_text())
  assert (config["checkpoint_every_steps"], config["log_every_steps"]) == (3, 2)


@testing.requires_fashion_mnist
def test_allowed_change_that_does_not_fit_the_checkpoint_is_refused(workdir):
  before = (workdir / "config.json").read_text()
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match="is intact but does not fit"):
    train.train_and_evaluate(
        testing.tiny_config(**{**RUN, "optimizer": "sgd"}),
        str(workdir), allow_config_change=["optimizer"])
  assert (workdir / "config.json").read_text() == before


@testing.requires_fashion_mnist
def test_divergence_stops_and_keeps_the_last_good_checkpoint(workdir):
  before = {name: (workdir / name).read_text()
            for name in ("config.json", "config_history.jsonl")}
  with pytest.raises(divergence.DivergedError) as error:
    train.train_and_evaluate(
        testing.tiny_config(**{**RUN, "num_epochs": 3, "learning_rate": 1e6}),
        str(workdir), allow_config_change=["num_epochs", "learning_rate"])
  message = str(error.value)
  assert "(epoch 3/3)" in message and " at step 2" in message
  assert "last good checkpoint: step 16 in " in message
  assert checkpointing.saved_steps(str(workdir / "checkpoints")) == [12, 16]
  _, state = testing.final_checkpoint(str(workdir))
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(
      state["params"]))
  records = (workdir / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(r)["epoch"] for r in records] == [1, 2]
  # No checkpoint was made with the new config: the record still describes
  # the checkpoints there are.
  assert before == {name: (workdir / name).read_text() for name in before}


@pytest.mark.slow  # a real multi-epoch run; -m slow runs it
@testing.requires_fashion_mnist
def test_skip_nonfinite_steps_skips_a_nan_perturbed_gradient(tmp_path,
                                                             compilation_cache):
  """rho = 1e30 overflows the perturbed pass in every step: each update is
  skipped, and the run ends with the initial parameters, all finite."""
  del compilation_cache
  config = testing.tiny_config(optimizer="sam", num_epochs=1, rho=1e30,
                               skip_nonfinite_steps=100)
  metrics = train.train_and_evaluate(config, str(tmp_path))
  assert metrics["skipped_steps"] == 8
  _, state = testing.final_checkpoint(str(tmp_path))
  model = models.create_model(config.model, 10, config.model_width)
  initial = model.init(jax.random.PRNGKey(config.seed),
                       np.zeros((1, 28, 28, 1), np.float32), train=False)
  for a, b in zip(jax.tree.leaves(state["params"]),
                  jax.tree.leaves(initial["params"])):
    # Eager and jitted initialisation differ in the last bit; one step of
    # SGD at learning rate 0.2 would move them by far more.
    numerics.assert_trees_close(a, b)


@testing.requires_fashion_mnist
def test_second_run_on_a_busy_workdir_is_refused(tmp_path):
  with workdir_guard.lock(str(tmp_path)):
    with pytest.raises(workdir_guard.WorkdirBusyError,
                       match=f"in use by another run \\(pid {os.getpid()} "):
      train.train_and_evaluate(testing.tiny_config(num_epochs=1),
                               str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == [workdir_guard.LOCK_FILE]


def test_lock_of_a_killed_run_is_released(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c",
       "import sys, time; from experiments import workdir_guard; "
       "held = workdir_guard.lock(sys.argv[1]); held.__enter__(); "
       "print('locked', flush=True); time.sleep(600)", str(tmp_path)],
      cwd=testing.REPO_ROOT, env={**os.environ, "PYTHONPATH": testing.REPO_ROOT},
      stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(workdir_guard.WorkdirBusyError):
      with workdir_guard.lock(str(tmp_path)):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    with workdir_guard.lock(str(tmp_path)):
      pass
  finally:
    holder.kill()
    holder.wait(timeout=60)
    holder.stdout.close()


def test_a_key_the_checkpoints_predate_is_no_change_at_its_default(tmp_path):
  """A key added to the program after the checkpoints were made resumes at
  its default, and is refused at any other value."""
  old = {"optimizer": "sam", "rho": 0.2}
  (tmp_path / workdir_guard.CONFIG_FILE).write_text(json.dumps(old))
  defaults = {"optimizer": "ssam-f", "rho": 0.05, "ascent": "always"}
  changed = workdir_guard.check_config({**old, "ascent": "always"}, str(tmp_path), True,
                                       defaults=defaults)
  assert changed == {}
  with pytest.raises(workdir_guard.ConfigMismatchError, match="ascent: '<absent>' -> 'msam'"):
    workdir_guard.check_config({**old, "ascent": "msam"}, str(tmp_path), True,
                               defaults=defaults)
  with pytest.raises(workdir_guard.ConfigMismatchError, match="ascent"):
    workdir_guard.check_config({**old, "ascent": "always"}, str(tmp_path), True)


@testing.requires_fashion_mnist
def test_resume_accepts_keys_the_checkpoints_predate_at_their_defaults(workdir):
  """The training program passes the base config's defaults to the guard."""
  config_path = workdir / "config.json"
  config = json.loads(config_path.read_text())
  predated = {key: config.pop(key) for key in list(config) if key.startswith("ascent")}
  assert predated == {"ascent": "always", "ascent_every": 1, "ascent_probability": 0.0,
                      "ascent_batch_fraction": 1.0}
  config_path.write_text(json.dumps(config))
  train.train_and_evaluate(testing.tiny_config(**RUN), str(workdir))
  history = [json.loads(line) for line in
             (workdir / "config_history.jsonl").read_text().splitlines()]
  assert history[-1]["changed"] == {}
  config_path.write_text(json.dumps(config))
  with pytest.raises(workdir_guard.ConfigMismatchError, match="ascent_every: '<absent>' -> 2"):
    train.train_and_evaluate(testing.tiny_config(**RUN, ascent="scheduled", ascent_every=2),
                             str(workdir))
