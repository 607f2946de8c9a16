"""What kind of strategy a built `tf.distribute.Strategy` is: the one place that asks.

Example:
  if kinds.kind(strategy) == PARAMETER_SERVER: ...   # or the predicates below
"""

from __future__ import annotations

import tensorflow as tf

from tfdist.strategy.options import MIRRORED, MULTI_WORKER_MIRRORED, ONE_DEVICE, PARAMETER_SERVER

DEFAULT = "default"  # no strategy scope: TensorFlow's default strategy

# Subclasses first: MultiWorkerMirrored's class is not a MirroredStrategy, but be explicit.
_KINDS = ((tf.distribute.ParameterServerStrategy, PARAMETER_SERVER),
          (tf.distribute.MultiWorkerMirroredStrategy, MULTI_WORKER_MIRRORED),
          (tf.distribute.MirroredStrategy, MIRRORED),
          (tf.distribute.OneDeviceStrategy, ONE_DEVICE))
# The public names of strategies whose classes are aliases.
_PUBLIC_NAMES = {"CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy",
                 "ParameterServerStrategyV2": "ParameterServerStrategy"}


def kind(strategy: tf.distribute.Strategy) -> str:
  """One of PARAMETER_SERVER, MULTI_WORKER_MIRRORED, MIRRORED, ONE_DEVICE, DEFAULT."""
  return next((name for cls, name in _KINDS if isinstance(strategy, cls)), DEFAULT)


def class_name(strategy: tf.distribute.Strategy) -> str:
  """The strategy's public class name (e.g. MultiWorkerMirroredStrategy)."""
  name = type(strategy).__name__
  return _PUBLIC_NAMES.get(name, name)


def uses_coordinator(strategy: tf.distribute.Strategy) -> bool:
  """ParameterServerStrategy: steps are scheduled on workers by a ClusterCoordinator."""
  return kind(strategy) == PARAMETER_SERVER


def spans_processes(strategy: tf.distribute.Strategy) -> bool:
  """MultiWorkerMirroredStrategy with replicas in other processes (collectives cross them)."""
  return (kind(strategy) == MULTI_WORKER_MIRRORED
          and strategy.num_replicas_in_sync > len(strategy.extended.worker_devices))


def spans_machines(strategy: tf.distribute.Strategy) -> bool:
  """A multi-worker strategy (MultiWorkerMirrored or ParameterServer): workers are processes."""
  return kind(strategy) in (MULTI_WORKER_MIRRORED, PARAMETER_SERVER)
