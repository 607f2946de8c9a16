"""Process-level device setup that TensorFlow only accepts before it initialises."""

from __future__ import annotations

import tensorflow as tf


def configure_host(cpu_replicas: int = 0, intra_op_threads: int = 0,
                   inter_op_threads: int = 0) -> None:
  """Splits the CPU into logical devices and sets thread pools.

  Must run before the first op or strategy; 0 leaves TensorFlow's default.

  Raises:
    RuntimeError: TensorFlow was already initialised (a programming error, not a user one).
  """
  if intra_op_threads:
    tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
  if inter_op_threads:
    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
  if cpu_replicas > 1 and not tf.config.list_physical_devices("GPU"):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_replicas)])


def num_gpus() -> int:
  return len(tf.config.list_physical_devices("GPU"))


def local_devices(cpu_replicas: int) -> list[str]:
  """The devices a MirroredStrategy on this machine replicates over."""
  gpus = tf.config.list_logical_devices("GPU")
  if gpus:
    return [d.name for d in gpus]
  cpus = tf.config.list_logical_devices("CPU")
  return [d.name for d in cpus[:max(cpu_replicas, 1)]]
