"""Where a run's training starts, from what its model dir holds.

The rule, in order:
1. A backup in the model dir: the run was interrupted; it resumes from the backup
   (the loops restore it) and `init_checkpoint` is ignored.
2. A finished run (run.json finished, its final checkpoint and metrics.json there):
   with more `epochs` than it completed, training continues from its final
   checkpoint (weights, and the optimizer state `fit` saved with them) at the next
   epoch; with as many or fewer there is nothing to train and its metrics stand.
3. Else a new run: from `init_checkpoint`'s weights when given, else from scratch.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from absl import logging

from tfdist.checkpoint.model_dir import (CHECKPOINTS, METRICS, RUN_FINISHED, CheckpointError,
                                         ModelDir, checkpoint_epoch, gfile, latest_checkpoint,
                                         read_json)


@dataclasses.dataclass(frozen=True)
class StartingPoint:
  epoch: int = 0                 # epochs already trained (fit's `initial_epoch`)
  weights: Optional[str] = None  # a checkpoint to load before training
  done: bool = False             # a finished run with nothing left to train
  reason: str = "a new run from scratch"


def starting_point(record: Optional[dict], has_backup: bool, model_dir: ModelDir, epochs: int,
           init_checkpoint: Optional[str]) -> StartingPoint:
  """The starting point by the module's rule. `record` is run.json as read before this run."""
  if has_backup:
    return StartingPoint(reason="resumes from its backup")
  finished = finished_checkpoint(record, model_dir)
  if finished is not None:
    done = checkpoint_epoch(finished)
    if epochs > done:
      return StartingPoint(epoch=done, weights=finished, reason=(
          f"continues the finished run of {done} epoch(s) from {os.path.basename(finished)} "
          f"up to epoch {epochs}"))
    return StartingPoint(epoch=done, weights=finished, done=True, reason=(
        f"nothing to train: {model_dir.root} holds a finished run of {done} epoch(s); ask for "
        "more epochs to train it further, or use a new --model_dir"))
  if init_checkpoint:
    return StartingPoint(weights=init_checkpoint,
                         reason=f"a new run from the weights of {init_checkpoint}")
  return StartingPoint()


def finished_checkpoint(record: Optional[dict], model_dir: ModelDir) -> Optional[str]:
  """The final checkpoint of the finished run `record` describes, if all of it is there."""
  if not record or record.get("status") != RUN_FINISHED or not record.get("final_checkpoint"):
    return None
  path = model_dir.path(os.path.join(CHECKPOINTS, record["final_checkpoint"]))
  if (checkpoint_epoch(path) is None or not gfile().exists(path + ".index")
      or read_json(model_dir.path(METRICS)) is None):
    return None
  return path


def resolve_checkpoint(path: str, field: str = "train.init_checkpoint") -> str:
  """A weights checkpoint prefix from a prefix, a tfdist model dir or a checkpoint dir.

  Raises:
    CheckpointError: nothing there to start from (one line, names `field`).
  """
  io = gfile()
  if io.exists(path + ".index"):
    return path
  if io.isdir(path):
    model_dir = ModelDir(path, is_chief=False)
    final = finished_checkpoint(model_dir.read_run(), model_dir)
    if final:
      return final
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    found = latest_checkpoint(path) or tf.train.latest_checkpoint(path)
    if found:
      return found
  raise CheckpointError(
      f"`{field}` ({path!r}): no checkpoint there; expected a checkpoint prefix "
      "(MODEL_DIR/checkpoints/ckpt-0004) or a tfdist model dir")


def log_resume(epoch: int, step: int) -> None:
  """The one line every loop logs when it restored a backup (epoch counts from 1)."""
  logging.info("Resumed from backup at epoch %d after step %d (not from the start)", epoch, step)
