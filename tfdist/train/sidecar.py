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

from tfdist.cluster import tf_config
from tfdist.data import DatasetSource
from tfdist.models import ModelFn
from tfdist.train import evaluate
from tfdist.train.options import TrainOptions
from tfdist.train.outputs import CHECKPOINTS, EVAL, METRICS, RUN_FINISHED, ModelDir, write_json


def run_sidecar_evaluator(*, source: DatasetSource, model_fn: ModelFn, options: TrainOptions,
                          poll_s: float = 1.0, run_id: Optional[str] = None) -> list[dict]:
  """Evaluates this run's checkpoints until its final one is evaluated.

  Results go to `model_dir/eval/`: TensorBoard scalars and metrics.json.

  Args:
    run_id: the run to follow (default: this task's, from TFDIST_RUN_ID or TF_CONFIG).

  Returns:
    One dict per evaluated checkpoint: checkpoint, epoch, eval_accuracy, eval_examples.
  """
  run_id = run_id or tf_config.run_id()
  model_dir = ModelDir(options.model_dir, is_chief=False)
  eval_dir = model_dir.path(EVAL)
  evaluator: Optional[_Evaluator] = None
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
        evaluator = evaluate.CheckpointEvaluator(
            source, model_fn, record.get("mixed_precision", "off"),
            tensorboard_dir=os.path.join(eval_dir, "tensorboard"))
      if len(pending) > 1:
        logging.info("Sidecar evaluator behind: skipping %s", ", ".join(pending[:-1]))
      results.append(evaluator.evaluate(model_dir.path(os.path.join(CHECKPOINTS, pending[-1]))))
      write_json(os.path.join(eval_dir, METRICS), {"run_id": run_id, "evaluations": results})
      continue  # More may have been written meanwhile.
    final = record.get("final_checkpoint")
    if record.get("status") == RUN_FINISHED and final == last:
      logging.info("Training finished; sidecar evaluator evaluated %d checkpoint(s), the last "
                   "being the final one (%s)", len(results), final)
      return results
    time.sleep(poll_s)
