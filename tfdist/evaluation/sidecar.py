"""The sidecar evaluator: evaluates the checkpoints the chief writes, outside the training cluster.

It follows the chief's run record (`run.json`, see outputs.ModelDir): it waits
for the record of its own run (same run id: TFDIST_RUN_ID or the cluster),
evaluates the checkpoints that run lists in order (only the newest when it falls behind),
and stops once the run is finished and its final checkpoint is evaluated.
Checkpoints of earlier runs in the same model dir are never evaluated.
"""

from __future__ import annotations

import os
import time
from typing import Optional

import tensorflow as tf
from absl import logging

from tfdist.checkpoint.model_dir import CHECKPOINTS, EVAL, RUN_FINISHED, ModelDir
from tfdist.data import DatasetSource
from tfdist.evaluation.evaluator import CheckpointEvaluator
from tfdist.evaluation.results import append_evaluation
from tfdist.models import ModelFn


def run_sidecar_evaluator(*, source: DatasetSource, model_fn: ModelFn, model_dir: str,
                          run_id: str, poll_s: float = 1.0) -> list[dict]:
  """Evaluates run `run_id`'s checkpoints in `model_dir` until its final one is evaluated.

  Results go to `model_dir/eval/`: TensorBoard scalars, and each evaluation is added to
  eval/metrics.json (with the run id).

  Args:
    run_id: the run to follow (the job's: TaskConfig.run_id).

  Returns:
    One dict per evaluated checkpoint: checkpoint, epoch, eval_accuracy, eval_examples.
  """
  model_dir = ModelDir(model_dir, is_chief=False)
  eval_dir = model_dir.path(EVAL)
  evaluator: Optional[CheckpointEvaluator] = None
  results: list[dict] = []
  logging.info("Sidecar evaluator following run %s in %s", run_id, model_dir.root)
  while True:
    record = model_dir.read_run()
    if record is None or record.get("run_id") != run_id:
      time.sleep(poll_s)  # The chief of this run has not started yet.
      continue
    checkpoints = record.get("checkpoints", [])
    last = results[-1]["checkpoint"] if results else None
    pending = checkpoints[checkpoints.index(last) + 1:] if last in checkpoints else checkpoints
    if pending:
      if evaluator is None:
        tf.io.gfile.makedirs(eval_dir)
        evaluator = CheckpointEvaluator(
            source, model_fn, record.get("mixed_precision", "off"),
            tensorboard_dir=os.path.join(eval_dir, "tensorboard"))
      if len(pending) > 1:
        logging.info("Sidecar evaluator behind: skipping %s", ", ".join(pending[:-1]))
      results.append(evaluator.evaluate(model_dir.path(os.path.join(CHECKPOINTS, pending[-1]))))
      append_evaluation(model_dir, {**results[-1], "run_id": run_id, "by": "sidecar evaluator"})
      continue  # More may have been written meanwhile.
    final = record.get("final_checkpoint")
    if record.get("status") == RUN_FINISHED and final == last:
      logging.info("Training finished; sidecar evaluator evaluated %d checkpoint(s), the last "
                   "being the final one (%s)", len(results), final)
      return results
    time.sleep(poll_s)
