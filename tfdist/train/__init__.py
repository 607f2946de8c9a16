"""Training: Keras fit integration, callbacks, outputs (checkpoints, exports, metrics.json)."""

from tfdist.train.fit import compile_if_needed, train_with_fit
from tfdist.train.options import LOOPS, TrainOptions, TrainOptionsError
from tfdist.train.outputs import ModelDir

__all__ = ["LOOPS", "ModelDir", "TrainOptions", "TrainOptionsError", "compile_if_needed",
           "train_with_fit"]
