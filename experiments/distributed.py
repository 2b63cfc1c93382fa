"""Processes, devices and the data-parallel layout of the training program.

The program is data parallel over every device of every process. Parameters,
BatchNorm statistics and the optimizer state are replicated; each batch is
split over the one axis (``data``) of a mesh of all devices. Every process
feeds only its own rows of the global batch, a contiguous block in process
order, so the global batch is exactly the one a single process would build.
Under ``jit`` the mean loss, BatchNorm's batch statistics, SAM's gradient
norm, the empirical Fisher and the top-k are therefore global, and two
processes with two devices each compute what one process with four does.

With one process and one device all of this reduces to a plain ``jit``.
"""

import dataclasses
from typing import Optional

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec
import numpy as np

DATA_AXIS = "data"


def initialize(*, auto_detect: bool = False,
               coordinator_address: Optional[str] = None,
               num_processes: Optional[int] = None,
               process_id: Optional[int] = None,
               cpu_devices: Optional[int] = None) -> None:
  """Configures devices and joins a multi-process job; call before using JAX.

  Args:
    auto_detect: join with the settings JAX detects on Cloud TPU, SLURM,
      Open MPI, ... (``jax.distributed.initialize()`` without arguments).
    coordinator_address: ``host:port`` of process 0. Together with
      ``num_processes`` and ``process_id`` it joins a job explicitly.
    num_processes: processes in the job.
    process_id: this process's index in ``[0, num_processes)``.
    cpu_devices: CPU devices this process exposes (to run data parallelism
      without accelerators, e.g. in tests); collectives between processes
      then use gloo.

  Raises:
    ValueError: if only some of the explicit settings are given.
  """
  explicit = {"coordinator_address": coordinator_address,
              "num_processes": num_processes, "process_id": process_id}
  given = {name for name, value in explicit.items() if value is not None}
  if given and given != set(explicit):
    missing = ", ".join(sorted(set(explicit) - given))
    raise ValueError(f"Joining a job explicitly needs coordinator_address, "
                     f"num_processes and process_id; missing: {missing}.")
  if cpu_devices is not None:
    if cpu_devices < 1:
      raise ValueError(f"cpu_devices must be >= 1, got {cpu_devices}.")
    jax.config.update("jax_num_cpu_devices", cpu_devices)
  if not (given or auto_detect):
    return
  if cpu_devices is not None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**explicit)


def is_main_process() -> bool:
  """Process 0 writes logs, metrics and the progress bar; all save checkpoints."""
  return jax.process_index() == 0


@dataclasses.dataclass(frozen=True)
class DataParallel:
  """A 1-D ``data`` mesh over all devices and the shardings the program uses."""
  mesh: Mesh

  @classmethod
  def over_all_devices(cls) -> "DataParallel":
    return cls(jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                             axis_types=(AxisType.Auto,)))

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, PartitionSpec())

  @property
  def by_example(self) -> NamedSharding:
    return NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))

  def check_divides(self, name: str, batch_size: int) -> None:
    """Raises a ValueError naming ``name`` unless every device gets whole rows."""
    devices = self.mesh.devices.size
    if batch_size % devices:
      raise ValueError(f"{name}={batch_size} must be divisible by the number "
                       f"of devices ({devices}) for data parallelism.")

  def global_batch(self, local_rows: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Assembles the global batch from this process's rows (on every process)."""
    def assemble(rows):
      shape = (rows.shape[0] * jax.process_count(),) + rows.shape[1:]
      return jax.make_array_from_process_local_data(self.by_example, rows, shape)
    return {name: assemble(rows) for name, rows in local_rows.items()}


def process_rows(batch_size: int) -> slice:
  """This process's contiguous block of rows in a global batch of ``batch_size``."""
  local = batch_size // jax.process_count()
  return slice(jax.process_index() * local, (jax.process_index() + 1) * local)
