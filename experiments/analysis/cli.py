"""The command-line options that say which trained models a figure analyses."""

import argparse
import os

from experiments.analysis import demo
from experiments.analysis import trained


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
  """``--checkpoint NAME=DIR`` (repeatable), ``--demo``, ``--out``, ``--seed``."""
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--checkpoint", action="append", metavar="NAME=DIR",
                      help="a trained run to analyse, labelled NAME; repeat "
                      "to compare optimizers")
  source.add_argument("--demo", action="store_true",
                      help="train a tiny MLP on synthetic data with SGD, SAM "
                      "and SSAM-F instead")
  parser.add_argument("--demo-epochs", type=int, default=10,
                      help="training epochs of the demo models")
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--seed", type=int, default=0,
                      help="PRNG seed of the analysis")


def models_from_args(args: argparse.Namespace) -> list[trained.TrainedModel]:
  if args.demo:
    return demo.demo_models(num_epochs=args.demo_epochs)
  models = []
  for spec in args.checkpoint:
    name, sep, directory = spec.partition("=")
    if not sep:
      name, directory = os.path.basename(os.path.normpath(spec)), spec
    models.append(trained.load_checkpoint(directory, name))
  return models
