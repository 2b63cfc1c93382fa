"""The training CLI: every user mistake is one line and exit status 2.

Most cases call ``experiments.main`` in-process (they stop before any
training); one tiny real run checks the actual command: a quiet stderr, the
epoch and final summaries, and a refused resume as one line.
"""

import json
import os
import re
import subprocess
import sys

from absl import flags
import pytest

from experiments import main as cli
from experiments import train
from experiments import workdir_guard
import experiment_helpers as testing

# config_flags loads the config file with importlib's deprecated load_module.
pytestmark = pytest.mark.filterwarnings(
    "ignore:the load_module\\(\\) method is deprecated:DeprecationWarning")

# A tqdm line, e.g. "epoch 1/2:  25%|██▌       | 4/16 [00:01<00:03, ...]".
PROGRESS_BAR = re.compile(r"^epoch \d+/\d+: +\d+%\|")


@pytest.fixture
def run_cli(monkeypatch, capsys, tmp_path):
  """Runs ``experiments.main`` in-process; returns (exit status, stderr)."""
  # main sets the cache directory only when this is unset; the test process
  # keeps its own.
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache"))

  def run(*args, **overrides):
    argv = ["experiments.main", *testing.tiny_config_flags(**overrides), *args]
    monkeypatch.setattr(sys, "argv", argv)  # config_flags reads overrides there
    for name in list(flags.FLAGS):  # the overrides of an earlier parse
      if name.startswith("config."):
        delattr(flags.FLAGS, name)
    flags.FLAGS.unparse_flags()
    code = 0
    try:
      cli.main(cli.parse_flags(argv))
    except SystemExit as exit_:
      code = exit_.code
    return code, capsys.readouterr().err
  return run


def _assert_one_line(code, stderr, *fragments):
  assert code == 2
  lines = stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


MISTAKES = [
    (dict(dataset="mnist"), ["config.dataset='mnist'", "fashion_mnist"]),
    (dict(batch_size=0), ["config.batch_size=0", ">= 1"]),
    (dict(num_epochs=-1), ["config.num_epochs=-1", ">= 1"]),
    (dict(label_noise=1.5), ["config.label_noise=1.5", "[0, 1)"]),
    (dict(optimizer="ssam-f", num_fisher_samples=0),
     ["config.num_fisher_samples=0", "[1, 64]"]),
    (dict(optimizer="ssam-f", num_fisher_samples=65),
     ["config.num_fisher_samples=65", "[1, 64]"]),
    (dict(validation_size=60_000), ["config.validation_size=60000",
                                    "[0, 59999]"]),
    (dict(batch_size=1024), ["config.batch_size=1024", "512 training"]),
    (dict(optimizer="adam"), ["config.optimizer='adam'", "ssam-f"]),
    (dict(learning_rate=-1.0), ["config.learning_rate=-1.0", "> 0"]),
    (dict(sparsity=1.5), ["config.sparsity", "1.5"]),
    (dict(rho=-0.1), ["config.rho", "-0.1"]),
    (dict(optimizer="ssam-d", drop_rate=2.0), ["config.drop_rate", "2.0"]),
    (dict(pattern="3:2"), ["config.pattern", "N=3, M=2"]),
    (dict(perturbed_leaves="("), ["config.perturbed_leaves='('",
                                  "regular expression"]),
    (dict(mask_update_every=3), ["--config.mask_update_every",
                                 "no such key"]),
    (dict(batch_size="abc"), ["--config.batch_size=abc"]),
]


@testing.requires_fashion_mnist
@pytest.mark.parametrize("overrides, fragments", MISTAKES, ids=[
    ",".join(f"{key}={value}" for key, value in overrides.items())
    for overrides, _ in MISTAKES])
def test_config_mistake_is_one_line(tmp_path, run_cli, overrides, fragments):
  code, stderr = run_cli(f"--workdir={tmp_path / 'run'}", **overrides)
  _assert_one_line(code, stderr, *fragments)
  assert not (tmp_path / "run").exists()  # refused before any work


@testing.requires_fashion_mnist
def test_workdir_under_a_file_is_one_line(tmp_path, run_cli):
  (tmp_path / "file").write_text("")
  code, stderr = run_cli(f"--workdir={tmp_path / 'file' / 'run'}")
  _assert_one_line(code, stderr, "is a file, not a directory")


@testing.requires_fashion_mnist
def test_unknown_key_to_allow_config_change_is_one_line(tmp_path, run_cli):
  code, stderr = run_cli(f"--workdir={tmp_path}",
                          "--allow_config_change=num_epoch")
  _assert_one_line(code, stderr, "--allow_config_change", "num_epoch")


def _fake_checkpoint(workdir, **config_changes):
  """A workdir whose checkpoint directory lists step 1, with the tiny config
  (plus ``config_changes``) as its config.json: enough for every check that
  runs before a restore."""
  os.makedirs(workdir / "checkpoints" / "1")
  config = testing.tiny_config(**config_changes)
  (workdir / "config.json").write_text(config.to_json())


@testing.requires_fashion_mnist
def test_resume_with_another_config_is_one_line(tmp_path, run_cli):
  _fake_checkpoint(tmp_path, rho=0.3)
  before = (tmp_path / "config.json").read_text()
  code, stderr = run_cli(f"--workdir={tmp_path}")
  _assert_one_line(code, stderr, "differing keys: rho: 0.3 -> 0.1",
                   "--allow_config_change=rho")
  assert (tmp_path / "config.json").read_text() == before


@testing.requires_fashion_mnist
def test_noresume_on_a_workdir_with_checkpoints_is_one_line(tmp_path, run_cli):
  _fake_checkpoint(tmp_path)
  code, stderr = run_cli(f"--workdir={tmp_path}", "--noresume")
  _assert_one_line(code, stderr, "holds checkpoints")


@testing.requires_fashion_mnist
def test_busy_workdir_is_one_line(tmp_path, run_cli):
  with workdir_guard.lock(str(tmp_path)):
    code, stderr = run_cli(f"--workdir={tmp_path}")
  _assert_one_line(code, stderr, "is in use by another run",
                   f"pid {os.getpid()} ")


@testing.requires_fashion_mnist
def test_unexpected_errors_keep_their_traceback(tmp_path, run_cli, monkeypatch):
  def fail(*args, **kwargs):
    raise RuntimeError("a bug")
  monkeypatch.setattr(train, "train_and_evaluate", fail)
  with pytest.raises(RuntimeError, match="a bug"):
    run_cli(f"--workdir={tmp_path}")


@pytest.mark.slow  # two real command-line runs; -m slow runs them
@testing.requires_fashion_mnist
def test_command_line_run_is_quiet_and_a_refused_resume_is_one_line(tmp_path):
  workdir = str(tmp_path / "run")
  env = testing.main_env(str(tmp_path / "jax_cache"))
  run = dict(optimizer="sam", num_epochs=1)
  result = subprocess.run(testing.main_command(workdir, **run),
                          cwd=testing.REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  noise = [line for line in result.stderr.replace("\r", "\n").splitlines()
           if line.strip() and not PROGRESS_BAR.match(line)]
  assert not noise, noise  # no TensorFlow, oneDNN, absl or tfds lines
  stdout = result.stdout.splitlines()
  epoch = [line for line in stdout if line.startswith("epoch 1/1 ")]
  assert len(epoch) == 1 and " train loss " in epoch[0]
  assert " test loss " in epoch[0] and epoch[0].endswith(" s")
  summary = "\n".join(stdout[stdout.index(next(
      line for line in stdout if line.startswith("FINAL "))):])
  for output in ("metrics.jsonl", "tensorboard", "checkpoints"):
    assert os.path.join(workdir, output) in summary
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["rho"] == 0.1

  refused = subprocess.run(testing.main_command(workdir, "--config.rho=0.5",
                                                **run),
                           cwd=testing.REPO_ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
  assert refused.returncode == 2
  assert refused.stdout == ""
  assert len(refused.stderr.splitlines()) == 1, refused.stderr
  assert refused.stderr.startswith("Error: ") and "rho: 0.1 -> 0.5" in refused.stderr
