"""`tfdist evaluate --model_dir=DIR [--checkpoint=PATH]`: a trained run's checkpoint on its eval split.

The run's own `params.yaml` says what to build (model, dataset, precision); the
checkpoint is `--checkpoint`, else the run's final one (run.json), else the newest
`checkpoints/ckpt-NNNN`. The result is added to `DIR/eval/metrics.json`.
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import app, flags, logging

from tfdist import config as config_lib
from tfdist.cli.app import EXIT_OK, native_stderr_to_log, run_command
from tfdist.checkpoint.model_dir import CHECKPOINTS, PARAMS, ModelDir, latest_checkpoint
from tfdist.strategy import StrategyOptions

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "A tfdist run's model dir (has params.yaml).")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "A weights checkpoint (prefix, e.g. DIR/checkpoints/ckpt-0004); default: "
    "the run's final checkpoint.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir (default: the run's).")


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {' '.join(argv[1:])!r}")
  if not _MODEL_DIR.value:
    raise app.UsageError("--model_dir: required, the model dir of a tfdist run")
  model_dir = ModelDir(os.path.expanduser(_MODEL_DIR.value), is_chief=True)
  params = model_dir.path(PARAMS)
  with native_stderr_to_log():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if not tf.io.gfile.exists(params):
      raise app.UsageError(f"--model_dir: {model_dir.root} has no {PARAMS}; expected the model "
                           "dir of a tfdist run")
    with tf.io.gfile.GFile(params) as f:
      layer = config_lib.parse_yaml_text(f.read(), field=f"--model_dir: {params}")
    if _DATA_DIR.value:
      layer.setdefault("data", {})["data_dir"] = _DATA_DIR.value
    config = config_lib.build(layer)
    checkpoint = _checkpoint(model_dir)
    from tfdist.data import load_source  # pylint: disable=import-outside-toplevel
    from tfdist.models import resolve  # pylint: disable=import-outside-toplevel
    from tfdist.strategy import factory  # pylint: disable=import-outside-toplevel
    from tfdist.evaluation import evaluator, results  # pylint: disable=import-outside-toplevel
    model_fn, source = resolve(config.model.name), load_source(config.data).prepare()
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.INFO)
  strategy = factory.make_strategy(StrategyOptions(), None)  # auto on this machine
  with strategy.scope():
    checkpoint_evaluator = evaluator.CheckpointEvaluator(source, model_fn,
                                                         config.train.mixed_precision)
  result = {**checkpoint_evaluator.evaluate(checkpoint), "checkpoint_path": checkpoint,
            "split": source.eval_split, "dataset": source.name, "by": "tfdist evaluate"}
  path = results.append_evaluation(model_dir, result)
  print(f"tfdist: evaluated {result['checkpoint']} of {config.model.name} on {source.name} "
        f"({source.eval_split}): {evaluator.describe(result)} ({result['eval_examples']:,} "
        f"examples); weights_sha256 {result['weights_sha256']}; metrics in {path}", flush=True)
  return EXIT_OK


def _checkpoint(model_dir: ModelDir) -> str:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if _CHECKPOINT.value:
    checkpoint = os.path.expanduser(_CHECKPOINT.value)
    if not tf.io.gfile.exists(checkpoint + ".index"):
      raise app.UsageError(f"--checkpoint: no checkpoint {checkpoint!r} (expected the prefix of "
                           "its .index file)")
    return checkpoint
  final = (model_dir.read_run() or {}).get("final_checkpoint")
  if final:
    return model_dir.path(os.path.join(CHECKPOINTS, final))
  latest = latest_checkpoint(model_dir.root)
  if latest is None:
    raise app.UsageError(f"--model_dir: {model_dir.root} has no checkpoints/ckpt-NNNN to evaluate")
  return latest


def run(argv: Sequence[str]) -> None:
  run_command("evaluate", main, argv)
