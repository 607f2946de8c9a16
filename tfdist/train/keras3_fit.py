"""`fit` for Keras 3 models under every strategy: the model's own `train_step` in tfdist's loop.

Keras 3's `model.fit` fails under MultiWorkerMirroredStrategy and has no
ParameterServerStrategy support (see keras3_upstream.py). This loop gives what
`fit` gives: the user's optimizer, loss and metrics (whatever `compile` set, loss
scaling across replicas included, as `train_step` does it), a progress line per
epoch with every metric, per-epoch figures in the history and TensorBoard, and the
epoch hooks of the user's callbacks; plus tfdist's checkpoints, backups, resume
and preemption saves, the same as the custom loop's.
"""

from __future__ import annotations

from typing import Sequence

from tfdist.train.custom_loop import CustomLoop
from tfdist.train.trainer import Trainer


class Keras3FitLoop(CustomLoop):
  """Runs `model.train_step` on each replica, `steps_per_execution` steps per call.

  Example:
    history = Keras3FitLoop(trainer, compiled_model).train()
  """

  def __init__(self, trainer: Trainer, model, callbacks: Sequence = ()):
    super().__init__(trainer, model, model.optimizer, callbacks=callbacks)
    self.steps_per_call = max(1, int(getattr(model, "steps_per_execution", 1) or 1))

  def _replica_step(self, features, labels):
    self.model.train_step((features, labels))
    return None  # no sums to all-reduce each step: the model's metrics say it all

  def _epoch_begin(self) -> None:
    self.model.reset_metrics()

  def _epoch_logs(self, totals: list, steps_done: int) -> dict:
    return {name: float(value) for name, value in self.model.get_metrics_result().items()}
