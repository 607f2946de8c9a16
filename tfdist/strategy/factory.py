"""Builds the tf.distribute strategy that `choice.choose` decided on."""

from __future__ import annotations

from typing import Optional

import tensorflow as tf
from absl import logging

from tfdist.cluster import TaskConfig
from tfdist.strategy import devices, parameter_server
from tfdist.strategy.choice import (ROLE_TRAINER, StrategyChoice, choose)
from tfdist.strategy.startup import grpc_start_failure
from tfdist.strategy.options import (MIRRORED, MULTI_WORKER_MIRRORED, ONE_DEVICE,
                                     PARAMETER_SERVER, StrategyError, StrategyOptions)

_CROSS_DEVICE_OPS = {
    "nccl": lambda: tf.distribute.NcclAllReduce(),
    "hierarchical_copy": lambda: tf.distribute.HierarchicalCopyAllReduce(),
    "reduction_to_one_device": lambda: tf.distribute.ReductionToOneDevice(),
}
_COMMUNICATION = {
    "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
    "ring": tf.distribute.experimental.CommunicationImplementation.RING,
    "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
}


def choose_for_this_machine(options: StrategyOptions,
                            config: Optional[TaskConfig]) -> StrategyChoice:
  """`choice.choose` with this machine's GPU count."""
  return choose(options, config, devices.num_gpus())


def expected_replicas(choice: StrategyChoice, options: StrategyOptions,
                      config: Optional[TaskConfig]) -> int:
  """How many replicas the chosen strategy will have, known before building it."""
  if choice.name == ONE_DEVICE:
    return 1
  if choice.name == MIRRORED:
    return len(devices.local_devices(options.cpu_replicas))
  if choice.name == PARAMETER_SERVER:
    return 1  # Each step runs on one worker (one replica each on CPU workers).
  workers = config.cluster.num_workers if config else 1
  return workers * max(devices.num_gpus(), 1)


def make_strategy(options: StrategyOptions, config: Optional[TaskConfig],
                  choice: Optional[StrategyChoice] = None,
                  log: bool = True) -> tf.distribute.Strategy:
  """Builds the strategy for this process and logs why it was chosen (unless not `log`).

  TF_CONFIG (when `config` is given) must already be in the environment.

  Example:
    strategy = make_strategy(StrategyOptions(name="mirrored", cpu_replicas=2), None)

  Raises:
    StrategyError: the options cannot run here (e.g. nccl without GPUs).
  """
  choice = choice or choose_for_this_machine(options, config)
  if choice.role != ROLE_TRAINER:
    raise StrategyError(f"task {config.task} runs as a {choice.role}, not a trainer; "
                        "see tfdist.strategy.parameter_server.serve")
  if log:
    logging.info(choice.log_line())
  try:
    return _build(choice, options, config)
  except tf.errors.OpError as e:  # A task's gRPC server could not bind its port.
    raise (config and grpc_start_failure(config, e)) or e


def _build(choice: StrategyChoice, options: StrategyOptions,
           config: Optional[TaskConfig]) -> tf.distribute.Strategy:
  if choice.name == ONE_DEVICE:
    return tf.distribute.OneDeviceStrategy(devices.local_devices(1)[0])
  if choice.name == MIRRORED:
    if options.cross_device_ops == "nccl" and not devices.num_gpus():
      raise StrategyError("`strategy.cross_device_ops` ('nccl') needs GPUs; none found")
    ops = _CROSS_DEVICE_OPS.get(options.cross_device_ops, lambda: None)()
    return tf.distribute.MirroredStrategy(
        devices=devices.local_devices(options.cpu_replicas), cross_device_ops=ops)
  if choice.name == MULTI_WORKER_MIRRORED:
    if options.communication == "nccl" and not devices.num_gpus():
      raise StrategyError("`strategy.communication` ('nccl') needs GPUs; none found")
    comm = tf.distribute.experimental.CommunicationOptions(
        implementation=_COMMUNICATION[options.communication],
        bytes_per_pack=options.bytes_per_pack)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=comm)
  if choice.name == PARAMETER_SERVER:
    return parameter_server.make_parameter_server_strategy(options, config)
  raise AssertionError(choice.name)
