"""Early-stopped test accuracy: the test accuracy at the best validation epoch.

A practitioner with a validation split keeps the model of the epoch with the
best validation accuracy; its test accuracy is the early-stopped one, read
from a run's per-epoch metrics (``metrics.jsonl``, the ``epochs`` of a sweep
record). The best epoch is the first of those with the highest validation
accuracy.

Runs that evaluate the test set at every epoch (``config.test_every_epochs
= 1``) give the exact value. A run that evaluated test only on some epochs
gives the test accuracy at the best validation epoch *among the epochs where
test was evaluated*, and is flagged ``early_stopped_approximate``: the best
validation epoch itself (``best_validation_epoch``) may lie between them.
"""


def early_stopped(epochs: list[dict]) -> dict:
  """The early-stopped fields of one run, or ``{}`` without validation.

  Args:
    epochs: per-epoch metrics with ``epoch`` and, on some or all epochs,
      ``validation_accuracy`` and ``test_accuracy``.

  Returns:
    ``{"early_stopped_test_accuracy", "early_stopped_epoch",
    "early_stopped_approximate", "best_validation_epoch"}``; ``{}`` if no
    epoch has a validation accuracy, or none has both.
  """
  validated = [e for e in epochs if "validation_accuracy" in e]
  both = [e for e in validated if "test_accuracy" in e]
  if not both:
    return {}
  best = _best(validated)
  chosen = best if "test_accuracy" in best else _best(both)
  return {"early_stopped_test_accuracy": chosen["test_accuracy"],
          "early_stopped_epoch": chosen["epoch"],
          "early_stopped_approximate": chosen is not best,
          "best_validation_epoch": best["epoch"]}


def _best(epochs: list[dict]) -> dict:
  # max() keeps the first of equal maxima: the earliest epoch wins a tie.
  return max(epochs, key=lambda e: e["validation_accuracy"])


def with_early_stopped(record: dict) -> dict:
  """``record`` with its early-stopped fields, computed from its ``epochs``
  when it does not carry them (records written before they existed)."""
  if "early_stopped_test_accuracy" in record:
    return record
  return {**record, **early_stopped(record.get("epochs", []))}
