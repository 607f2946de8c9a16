"""Training options, checked once when built."""

from __future__ import annotations

import dataclasses
from typing import Optional

from tfdist.models.options import SPARSE_UPDATES
from tfdist.train.precision import POLICIES as MIXED_PRECISION

LOOPS = ("fit", "custom")


class TrainOptionsError(ValueError):
  """A training option is invalid; the message names the field."""


@dataclasses.dataclass(frozen=True)
class TrainOptions:
  """Attributes:
    model_dir: checkpoints, backups, TensorBoard logs, the exported model, metrics.json.
    epochs: passes of `steps_per_epoch` steps.
    steps_per_epoch: None: one pass over the train split at the global batch.
    learning_rate: Adam's learning rate, for models that come uncompiled.
    seed: seeds Python, NumPy, TensorFlow and the input shuffle; None: unseeded (the input's
      order is still drawn from a seed, recorded in run.json, so a resumed run goes on
      with the same order).
    deterministic: TensorFlow's op determinism and deterministic tf.data: two runs with the
      same flags and cluster shape, or a run killed and resumed from its backup, end with
      bit-identical weights (`weights_sha256` in metrics.json). Needs a `seed`; refused
      under ParameterServerStrategy, where the order of the workers' updates varies.
    loop: `fit` (Keras model.fit) or `custom` (tfdist's custom loop).
    backup_every_steps: BackupAndRestore interval in steps (0: at epoch ends); the least
      interval when `save_share` widens it.
    save_share: the share of training time saving may cost, half for backups and half
      for epoch checkpoints: the run's first backup and first epoch checkpoint are timed,
      and the backup interval (in steps) and the checkpoint interval (in epochs; the last
      epoch always has one) widen until one save costs at most half this share of the
      training between two (checkpoint/schedule.py). 0: backups exactly every `backup_every_steps`, a
      checkpoint after every epoch.
    steps_per_execution: train steps per tf.function call, in both loops (`fit` of a model
      tfdist compiles, and the custom loop; a model you compiled keeps its own). The old
      name `steps_per_loop` is a deprecated alias (config.py).
    export: save the trained model (SavedModel) under model_dir/export.
    init_checkpoint: start a new run from these weights: a weights checkpoint prefix
      (`.../checkpoints/ckpt-0004`) or a tfdist model dir (its final checkpoint). A run
      that resumes from its backup, or continues a finished run, ignores it.
    sparse_updates: how embedding tables are read and updated (models/row_updates.py):
      `rows` (a step reads and writes only its batch's rows: SGD exactly, Adam and SGD with
      momentum lazily), `dense` (Keras's own rules), `auto` (rows under
      ParameterServerStrategy, where tables live on ps tasks; dense elsewhere).
    mixed_precision: `auto` (bfloat16 for tfdist's own models on CPUs with native bfloat16,
      else float32; see precision.py), `off`, `bfloat16`, or `float16` (GPUs; `fit` only,
      which scales the loss). Library calls treat `auto` as `off`: the CLI decides it.
  """

  model_dir: str = "/tmp/tfdist/mnist5k"
  epochs: int = 10
  steps_per_epoch: Optional[int] = None
  learning_rate: float = 1e-3
  seed: Optional[int] = 42
  deterministic: bool = False
  loop: str = "fit"
  backup_every_steps: int = 50
  save_share: float = 0.01
  steps_per_execution: int = 10
  export: bool = True
  mixed_precision: str = "auto"
  init_checkpoint: Optional[str] = None
  sparse_updates: str = "auto"

  def __post_init__(self):
    _positive_int("train.epochs", self.epochs)
    if self.steps_per_epoch is not None:
      _positive_int("train.steps_per_epoch", self.steps_per_epoch)
    _positive_int("train.steps_per_execution", self.steps_per_execution)
    if not isinstance(self.backup_every_steps, int) or self.backup_every_steps < 0:
      raise TrainOptionsError(
          f"`train.backup_every_steps` ({self.backup_every_steps!r}) must be an integer >= 0")
    if (isinstance(self.save_share, bool) or not isinstance(self.save_share, (int, float))
        or not 0 <= self.save_share < 1):
      raise TrainOptionsError(f"`train.save_share` ({self.save_share!r}) must be a number from "
                              "0 (no widening) to below 1")
    if not isinstance(self.learning_rate, (int, float)) or not self.learning_rate > 0:
      raise TrainOptionsError(
          f"`train.learning_rate` ({self.learning_rate!r}) must be a positive number")
    if self.mixed_precision not in MIXED_PRECISION:
      raise TrainOptionsError(f"`train.mixed_precision` ({self.mixed_precision!r}) must be one of "
                              f"{', '.join(MIXED_PRECISION)}")
    if self.mixed_precision == "float16" and self.loop == "custom":
      raise TrainOptionsError("`train.mixed_precision` ('float16') needs loss scaling, which only "
                              "`train.loop=fit` does; use bfloat16 with the custom loop")
    if self.sparse_updates not in SPARSE_UPDATES:
      raise TrainOptionsError(f"`train.sparse_updates` ({self.sparse_updates!r}) must be one of "
                              f"{', '.join(SPARSE_UPDATES)}")
    if not isinstance(self.deterministic, bool):
      raise TrainOptionsError(
          f"`train.deterministic` ({self.deterministic!r}) must be true or false")
    if self.deterministic and self.seed is None:
      raise TrainOptionsError("`train.deterministic` needs `train.seed` (an integer): runs "
                              "without one start from different weights")
    if self.loop not in LOOPS:
      raise TrainOptionsError(f"`train.loop` ({self.loop!r}) must be one of {', '.join(LOOPS)}")
    if self.init_checkpoint is not None and (not self.init_checkpoint
                                             or "\0" in self.init_checkpoint):
      raise TrainOptionsError(f"`train.init_checkpoint` ({self.init_checkpoint!r}) must be a path")
    if not self.model_dir or not isinstance(self.model_dir, str) or "\0" in self.model_dir:
      raise TrainOptionsError(f"`train.model_dir` ({self.model_dir!r}) must be a path")


def no_determinism_under_parameter_servers() -> TrainOptionsError:
  """The one-line refusal of `train.deterministic` under ParameterServerStrategy."""
  return TrainOptionsError(
      "`train.deterministic`: ParameterServerStrategy cannot run deterministically (workers "
      "update the variables in whatever order their steps finish); use it with "
      "MirroredStrategy or MultiWorkerMirroredStrategy")


def _positive_int(field: str, value) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise TrainOptionsError(f"`{field}` ({value!r}) must be a positive integer")
