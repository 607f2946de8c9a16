"""Small agreements between the workers of a synchronous multi-worker job."""

from __future__ import annotations

import tensorflow as tf

from tfdist.strategy.kinds import spans_processes


def gather_across_workers(strategy: tf.distribute.Strategy,
                          values: list[int]) -> list[list[int]]:
  """Every replica's `values`, gathered on every worker (a collective: all must call it).

  Example (all workers take the largest of their proposals):
    agreed = max(v[0] for v in gather_across_workers(strategy, [proposal]))
  """

  @tf.function
  def gather():
    def replica_fn():  # The tensor is made on each replica (an outside one has no destinations).
      return tf.distribute.get_replica_context().all_gather(tf.constant([values], tf.int64), 0)
    return strategy.run(replica_fn)

  return strategy.experimental_local_results(gather())[0].numpy().tolist()


def agree_on_max(strategy: tf.distribute.Strategy, value: int) -> int:
  """The largest `value` of all workers under a multi-worker strategy, else `value`."""
  if not spans_processes(strategy):
    return value
  return max(v[0] for v in gather_across_workers(strategy, [value]))
