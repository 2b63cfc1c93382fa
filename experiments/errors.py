"""Expected ways a run stops, which the CLI reports as one line without a traceback.

Anything else that goes wrong is a bug or an environment problem and keeps
its traceback.
"""


class RunError(Exception):
  """A run stops for a reason its message explains in full."""
  exit_code = 1


class UsageError(RunError):
  """The user asked for something the program cannot do (exit status 2)."""
  exit_code = 2
