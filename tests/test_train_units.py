"""Small training decisions: backup intervals under steps_per_execution."""

import tensorflow as tf

from tfdist.train import TrainOptions
from tfdist.train.fit import backup_frequency


def test_backup_interval_counts_steps_not_executions():
  default = tf.distribute.get_strategy()
  assert backup_frequency(default, TrainOptions(backup_every_steps=50, steps_per_execution=10)) == 5
  assert backup_frequency(default, TrainOptions(backup_every_steps=5, steps_per_execution=10)) == 1
  assert backup_frequency(default, TrainOptions(backup_every_steps=50, steps_per_execution=1)) == 50
  assert backup_frequency(default, TrainOptions(backup_every_steps=0)) == "epoch"
