"""Evaluating what training wrote: the evaluator, the sidecar that follows a run, and the one
writer of `eval/metrics.json`."""

from tfdist import _lazy

_LAZY = {"CheckpointEvaluator": "evaluator", "run_sidecar_evaluator": "sidecar",
         "append_evaluation": "results"}

__all__ = [*_LAZY]

__getattr__ = _lazy.attributes(__name__, _LAZY)
