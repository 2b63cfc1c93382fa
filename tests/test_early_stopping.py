"""Early-stopped test accuracy from per-epoch metrics."""

from experiments import early_stopping


def _epoch(epoch, validation=None, test=None):
  metrics = {"epoch": epoch}
  if validation is not None:
    metrics["validation_accuracy"] = validation
  if test is not None:
    metrics["test_accuracy"] = test
  return metrics


def test_test_accuracy_at_the_best_validation_epoch():
  epochs = [_epoch(1, 0.70, 0.69), _epoch(2, 0.82, 0.80), _epoch(3, 0.75, 0.74)]
  assert early_stopping.early_stopped(epochs) == {
      "early_stopped_test_accuracy": 0.80, "early_stopped_epoch": 2,
      "early_stopped_approximate": False, "best_validation_epoch": 2}


def test_the_first_of_equal_validation_maxima_wins():
  epochs = [_epoch(1, 0.8, 0.71), _epoch(2, 0.8, 0.72), _epoch(3, 0.7, 0.9)]
  assert early_stopping.early_stopped(epochs)["early_stopped_epoch"] == 1


def test_without_test_at_the_best_epoch_the_value_is_approximate():
  # Test every 2nd epoch; validation peaks at epoch 3, where test was not run.
  epochs = [_epoch(1, 0.70), _epoch(2, 0.78, 0.77), _epoch(3, 0.82),
            _epoch(4, 0.76, 0.75)]
  assert early_stopping.early_stopped(epochs) == {
      "early_stopped_test_accuracy": 0.77, "early_stopped_epoch": 2,
      "early_stopped_approximate": True, "best_validation_epoch": 3}


def test_runs_without_validation_have_no_early_stopped_accuracy():
  assert early_stopping.early_stopped([_epoch(1, test=0.8)]) == {}
  assert early_stopping.early_stopped([_epoch(1, validation=0.8)]) == {}
  assert early_stopping.early_stopped([]) == {}


def test_records_keep_their_own_fields_and_old_ones_are_completed():
  epochs = [_epoch(1, 0.7, 0.6), _epoch(2, 0.8, 0.7)]
  old = {"seed": 0, "epochs": epochs}
  assert early_stopping.with_early_stopped(old)["early_stopped_test_accuracy"] == 0.7
  assert "early_stopped_test_accuracy" not in old
  recorded = {"seed": 0, "epochs": epochs, "early_stopped_test_accuracy": 0.5}
  assert early_stopping.with_early_stopped(recorded) is recorded
  assert early_stopping.with_early_stopped({"seed": 0}) == {"seed": 0}


def test_the_fashion_mnist_regimes_evaluate_test_every_epoch():
  # Exact early-stopped accuracies need the test accuracy of every epoch.
  from experiments.configs import fashion_mnist_label_noise, fashion_mnist_overfit  # pylint: disable=g-import-not-at-top
  for module in (fashion_mnist_overfit, fashion_mnist_label_noise):
    assert module.get_config().test_every_epochs == 1
