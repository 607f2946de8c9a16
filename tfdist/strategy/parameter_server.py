"""Parameter-server training: the chief's strategy, and the server every other task runs.

Under ParameterServerStrategy only the chief runs Python training code: it
places variables on the `ps` tasks (large ones split across them) and
schedules steps on the workers through a ClusterCoordinator. Workers and
parameter servers are plain `tf.distribute.Server`s that serve until stopped.
"""

from __future__ import annotations

from typing import NoReturn

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


def serve(config: TaskConfig) -> NoReturn:
  """Runs this worker or ps task's gRPC server until the process is stopped."""
  resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
  try:
    server = tf.distribute.Server(
        resolver.cluster_spec(), job_name=config.task.type, task_index=config.task.index,
        protocol=resolver.rpc_layer or "grpc", start=True)
  except tf.errors.OpError as e:
    raise grpc_start_failure(config, e) or e
  logging.info("Serving as %s for parameter-server training at %s (until stopped)",
               config.task, config.cluster.address(config.task))
  server.join()
  raise AssertionError("tf.distribute.Server.join returned")
