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
from tfdist.strategy.startup import grpc_start_failure


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
          poll_s: float = 2.0) -> None:
  """Runs this worker or ps task's gRPC server until `stop_when()` is true (checked every
  `poll_s` seconds), or, without it, until the process is stopped.

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
  logging.info("Training finished; %s stops serving", config.task)
