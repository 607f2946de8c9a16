"""Held-out accuracy, computed by one process over the whole eval split."""

from __future__ import annotations

import os
from typing import Callable, Optional

import tensorflow as tf
import tf_keras as keras
from absl import logging

from tfdist.data import DatasetSource
from tfdist.models import ModelFn, generations
from tfdist.checkpoint.model_dir import checkpoint_epoch

AccuracyFn = Callable[[tf.data.Dataset], tuple[float, int]]


def accuracy_fn(model: keras.Model) -> AccuracyFn:
  """A function giving (top-1 accuracy, examples seen) of `model` on a dataset.

  Traced once: the sidecar evaluator reuses it for every checkpoint. Works on
  logits and on probabilities. Runs outside any strategy scope: every example
  is evaluated exactly once, partial last batch included, whatever strategy
  trained the model.
  """

  @tf.function
  def correct(images, labels):
    predicted = tf.argmax(model(images, training=False), axis=-1, output_type=tf.int64)
    return tf.reduce_sum(tf.cast(tf.equal(predicted, tf.cast(labels, tf.int64)), tf.int64))

  def evaluate(dataset: tf.data.Dataset) -> tuple[float, int]:
    right = total = 0
    for images, labels in dataset:
      right += int(correct(images, labels))
      total += int(tf.shape(labels)[0])
    return (right / total if total else 0.0), total

  return evaluate


def accuracy(model: keras.Model, dataset: tf.data.Dataset) -> tuple[float, int]:
  """(top-1 accuracy, examples seen) of `model` on `dataset`; see accuracy_fn."""
  return accuracy_fn(model)(dataset)


class CheckpointEvaluator:
  """One model, built once with the trainers' precision, evaluating checkpoint after checkpoint.

  Example:
    evaluator = CheckpointEvaluator(source, resolve("cnn"), "off")
    evaluator.evaluate("/tmp/run/checkpoints/ckpt-0010")["eval_accuracy"]
  """

  def __init__(self, source: DatasetSource, model_fn: ModelFn, mixed_precision: str,
               tensorboard_dir: Optional[str] = None):
    generations.set_mixed_precision(mixed_precision)
    self.model = model_fn(source.input_shape, source.num_classes)
    self.dataset = source.eval_dataset(256)
    self.accuracy = accuracy_fn(self.model)
    self.writer = tf.summary.create_file_writer(tensorboard_dir) if tensorboard_dir else None

  def evaluate(self, checkpoint: str) -> dict:
    """Loads `checkpoint` (a TF weights checkpoint prefix) and evaluates the whole eval split."""
    epoch = checkpoint_epoch(checkpoint)
    generations.load_weights(self.model, checkpoint).expect_partial()
    accuracy, examples = self.accuracy(self.dataset)
    if self.writer is not None and epoch is not None:
      with self.writer.as_default():
        tf.summary.scalar("eval_accuracy", accuracy, step=epoch)
      self.writer.flush()
    logging.info("Evaluated %s (epoch %s): eval_accuracy %.4f", os.path.basename(checkpoint),
                 epoch, accuracy)
    return {"checkpoint": os.path.basename(checkpoint), "epoch": epoch,
            "eval_accuracy": accuracy, "eval_examples": examples}
