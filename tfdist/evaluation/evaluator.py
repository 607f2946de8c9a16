"""A checkpoint's figures on the whole eval split: the model's compiled loss and metrics,
computed by one process. The trainer's final evaluation, the sidecar evaluator and
`tfdist evaluate` all use this, so they report the same figures."""

from __future__ import annotations

import os
from typing import Optional

import tensorflow as tf
from absl import logging

from tfdist.checkpoint.model_dir import checkpoint_epoch
from tfdist.data import DatasetSource
from tfdist.models import ModelFn, compiling, generations


def accuracy_of(metrics: dict) -> Optional[float]:
  """The model's accuracy among its metrics: `accuracy`, else the one name ending in
  `accuracy` (e.g. `sparse_categorical_accuracy`); None when there is none or several."""
  if "accuracy" in metrics:
    return metrics["accuracy"]
  found = [value for name, value in metrics.items() if name.endswith("accuracy")]
  return found[0] if len(found) == 1 else None


class CheckpointEvaluator:
  """One model, built once outside any strategy with the trainers' precision, compiled as the
  trainers' was, evaluating checkpoint after checkpoint. Every example of the eval split is
  evaluated once (the last batch at its true size), whatever strategy trained the model.

  Example:
    evaluator = CheckpointEvaluator(source, resolve("cnn"), "off")
    evaluator.evaluate("/tmp/run/checkpoints/ckpt-0010")["eval_accuracy"]
  """

  def __init__(self, source: DatasetSource, model_fn: ModelFn, mixed_precision: str,
               tensorboard_dir: Optional[str] = None):
    generations.set_mixed_precision(mixed_precision)
    model = model_fn(**source.model_arguments())
    class_ids = source.example_spec.class_ids
    # A model trained by a custom step loss may come uncompiled with labels tfdist cannot
    # score: then only the predictions are there to evaluate, and no figure is reported.
    self.scored = compiling.is_compiled(model) or class_ids
    self.model = (compiling.compile_if_needed(model, learning_rate=1e-3, steps_per_execution=1,
                                              class_ids=class_ids)
                  if self.scored else model)
    self.dataset = source.eval_dataset(256)
    self.examples = int(self.dataset.reduce(
        tf.constant(0, tf.int64),
        lambda count, batch: count + tf.shape(tf.nest.flatten(batch[1])[0], tf.int64)[0]))
    self.writer = tf.summary.create_file_writer(tensorboard_dir) if tensorboard_dir else None

  def evaluate(self, checkpoint: str) -> dict:
    """Loads `checkpoint` (a TF weights checkpoint prefix) and evaluates the whole eval split:
    checkpoint, epoch, eval_loss, eval_metrics (every compiled metric, as Keras names it),
    eval_accuracy (None without an accuracy metric), eval_examples, weights_sha256."""
    epoch = checkpoint_epoch(checkpoint)
    generations.load_weights(self.model, checkpoint).expect_partial()
    figures = self.figures()
    if self.writer is not None and epoch is not None:
      with self.writer.as_default():
        for name, value in [("eval_loss", figures["eval_loss"]),
                            *((f"eval_{k}", v) for k, v in figures["eval_metrics"].items())]:
          if value is not None:
            tf.summary.scalar(name, value, step=epoch)
      self.writer.flush()
    logging.info("Evaluated %s (epoch %s): %s", os.path.basename(checkpoint), epoch,
                 describe(figures))
    return {"checkpoint": os.path.basename(checkpoint), "epoch": epoch, **figures,
            "weights_sha256": generations.weights_sha256(self.model)}

  def figures(self) -> dict:
    """eval_loss, eval_metrics, eval_accuracy, eval_examples of the model's current weights."""
    if not self.scored:
      return {"eval_loss": None, "eval_metrics": {}, "eval_accuracy": None,
              "eval_examples": self.examples}
    results = {name: float(value) for name, value in self.model.evaluate(
        self.dataset, return_dict=True, verbose=0).items()}
    loss = results.pop("loss", None)
    return {"eval_loss": loss, "eval_metrics": results, "eval_accuracy": accuracy_of(results),
            "eval_examples": self.examples}


def describe(figures: dict) -> str:
  """`eval_loss 0.0812, eval_accuracy 0.9740` (the loss, then every metric)."""
  parts = [("eval_loss", figures.get("eval_loss"))]
  parts += [(f"eval_{name}", value) for name, value in figures.get("eval_metrics", {}).items()]
  shown = [f"{name} {value:.4f}" for name, value in parts if value is not None]
  return ", ".join(shown) or "no figures (the model is uncompiled and its labels not class ids)"
