"""The sidecar evaluator: evaluates each checkpoint the chief writes, outside the training cluster."""

from __future__ import annotations

import glob
import os
import time
from typing import Optional

import tensorflow as tf
from absl import logging

from tfdist.data import DatasetSource
from tfdist.models import ModelFn
from tfdist.train import evaluate
from tfdist.train.options import TrainOptions
from tfdist.train.outputs import EVAL, METRICS, ModelDir, checkpoint_epoch, write_json


def run_sidecar_evaluator(*, source: DatasetSource, model_fn: ModelFn, options: TrainOptions,
                          poll_s: float = 1.0, started: Optional[float] = None) -> list[dict]:
  """Evaluates every new `checkpoints/ckpt-NNNN` in order until training has finished.

  Training has finished when the chief writes metrics.json after this evaluator
  started. Results go to `model_dir/eval/`: TensorBoard scalars and metrics.json.

  Returns:
    One dict per evaluated checkpoint: checkpoint, epoch, eval_accuracy, eval_examples.
  """
  started = time.time() if started is None else started
  model_dir = ModelDir(options.model_dir, is_chief=False)
  eval_dir = model_dir.path(EVAL)
  os.makedirs(eval_dir, exist_ok=True)
  model = model_fn(source.input_shape, source.num_classes)
  dataset = source.eval_dataset(256)
  evaluate_model = evaluate.accuracy_fn(model)
  writer = tf.summary.create_file_writer(os.path.join(eval_dir, "tensorboard"))
  results: list[dict] = []
  logging.info("Sidecar evaluator watching %s", model_dir.checkpoints)
  while True:
    finished = _training_finished(model_dir.path(METRICS), started)
    done = {r["checkpoint"] for r in results}
    for index_file in sorted(glob.glob(os.path.join(model_dir.checkpoints, "*.index"))):
      checkpoint = index_file[:-len(".index")]
      epoch = checkpoint_epoch(checkpoint)
      if epoch is None or checkpoint in done:
        continue
      model.load_weights(checkpoint).expect_partial()
      accuracy, examples = evaluate_model(dataset)
      with writer.as_default():
        tf.summary.scalar("eval_accuracy", accuracy, step=epoch)
      writer.flush()
      results.append({"checkpoint": checkpoint, "epoch": epoch, "eval_accuracy": accuracy,
                      "eval_examples": examples})
      write_json(os.path.join(eval_dir, METRICS), {"evaluations": results})
      logging.info("Evaluated %s (epoch %d): eval_accuracy %.4f", os.path.basename(checkpoint),
                   epoch, accuracy)
    if finished:
      logging.info("Training finished; sidecar evaluator evaluated %d checkpoint(s)", len(results))
      return results
    time.sleep(poll_s)


def _training_finished(metrics_path: str, started: float) -> bool:
  return os.path.exists(metrics_path) and os.path.getmtime(metrics_path) >= started
