"""Parameter-server training: the chief's strategy, and the server every other task runs.

Under ParameterServerStrategy only the chief runs Python training code: it
places variables on the `ps` tasks (large ones split across them) and
schedules steps on the workers through a ClusterCoordinator. Workers and
parameter servers are plain `tf.distribute.Server`s that serve until stopped.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import tensorflow as tf
from absl import logging

from tfdist.cluster import TaskConfig
from tfdist.strategy.options import StrategyOptions
from tfdist.strategy.startup import accepts_connections, grpc_start_failure

# How long a server that saw the run finish waits for the chief's process to end.
CHIEF_EXIT_TIMEOUT_S = 60.0


def make_parameter_server_strategy(options: StrategyOptions,
                                   config: TaskConfig) -> tf.distribute.Strategy:
  """The chief's ParameterServerStrategy; TF_CONFIG must describe `config`.

  Variables of at least `options.ps_shard_min_bytes` are split into up to one
  shard per ps task (MinSizePartitioner); 0 keeps every variable whole.
  """
  partitioner = None
  if options.ps_shard_min_bytes and config.cluster.num_ps > 1:
    partitioner = tf.distribute.experimental.partitioners.MinSizePartitioner(
        min_shard_bytes=options.ps_shard_min_bytes, max_shards=config.cluster.num_ps)
  resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
  return tf.distribute.experimental.ParameterServerStrategy(
      resolver, variable_partitioner=partitioner)


def serve(config: TaskConfig, stop_when: Optional[Callable[[], bool]] = None,
          poll_s: float = 2.0, chief_exit_timeout_s: float = CHIEF_EXIT_TIMEOUT_S) -> None:
  """Runs this worker or ps task's gRPC server until `stop_when()` is true (checked every
  `poll_s` seconds) and the chief's process has ended; without `stop_when`, until this
  process is stopped.

  The chief records the run finished before its process ends, and its eager context goes
  on using this server after that: as the process exits it releases the functions it
  registered here, one RPC each. A server gone by then makes the chief print a gRPC error
  for each (tens to hundreds of lines after a successful run). So once `stop_when()` holds,
  the server also waits until the chief's port stops accepting connections, which happens
  only when its process is gone, for at most `chief_exit_timeout_s` (a chief that lives on,
  e.g. a script that calls `tfdist.run` and then does other work, does not hold it forever).

  Example:
    serve(task_config, stop_when=lambda: os.path.exists("/shared/run/DONE"))
    os._exit(0)  # the server thread never ends by itself
  """
  resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
  try:
    server = tf.distribute.Server(
        resolver.cluster_spec(), job_name=config.task.type, task_index=config.task.index,
        protocol=resolver.rpc_layer or "grpc", start=True)
  except tf.errors.OpError as e:
    raise grpc_start_failure(config, e) or e
  logging.info("Serving as %s for parameter-server training at %s (until %s)",
               config.task, config.cluster.address(config.task),
               "the run finishes" if stop_when else "stopped")
  if stop_when is None:
    server.join()
  while not stop_when():
    time.sleep(poll_s)
  if wait_for_chief_exit(config, chief_exit_timeout_s):
    logging.info("Training finished and the chief has ended; %s stops serving", config.task)
  else:
    logging.warning("Training finished, but the chief is still running %.0f s later; %s stops "
                    "serving (the chief may log errors about it when it ends)",
                    chief_exit_timeout_s, config.task)


def wait_for_chief_exit(config: TaskConfig, timeout_s: float, poll_s: float = 0.2) -> bool:
  """Waits until the chief's gRPC port stops accepting connections (its process is gone);
  False if it still does after `timeout_s`."""
  chief = next((t for t in config.cluster.tasks() if config.cluster.is_chief(t)), None)
  if chief is None or chief == config.task:
    return True
  address = config.cluster.address(chief)
  deadline = time.monotonic() + timeout_s
  while accepts_connections(address, timeout_s=1.0):
    if time.monotonic() >= deadline:
      return False
    time.sleep(poll_s)
  return True
