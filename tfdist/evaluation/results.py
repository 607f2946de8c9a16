"""`MODEL_DIR/eval/metrics.json`: every evaluation of a model dir's checkpoints, in the order they
were made, by the sidecar evaluator or `tfdist evaluate`. This module is its one writer."""

from __future__ import annotations

import os

from tfdist.checkpoint.model_dir import EVAL, METRICS, ModelDir, gfile, read_json, write_json


def append_evaluation(model_dir: ModelDir, evaluation: dict) -> str:
  """Adds `evaluation` to the model dir's eval/metrics.json (atomically); returns its path.

  Example:
    append_evaluation(model_dir, {"checkpoint": "ckpt-0010", "eval_accuracy": 0.97,
                                  "by": "tfdist evaluate"})
  """
  path = os.path.join(model_dir.root, EVAL, METRICS)
  gfile().makedirs(os.path.dirname(path))
  previous = read_json(path) or {}
  write_json(path, {**previous, "evaluations": [*previous.get("evaluations", []), evaluation]})
  return path
