"""Held-out accuracy, computed by one process over the whole eval split."""

from __future__ import annotations

from typing import Callable

import tensorflow as tf
import tf_keras as keras

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
