"""Training: Keras fit integration, callbacks, outputs (checkpoints, exports, metrics.json).

Options and the model-dir layout import no TensorFlow; the trainers load on first use.
"""

from tfdist import _lazy
from tfdist.train.options import LOOPS, TrainOptions, TrainOptionsError
from tfdist.train.outputs import ModelDir

_LAZY = {"compile_if_needed": "fit", "train_with_fit": "fit",
         "run_sidecar_evaluator": "sidecar", "train_with_custom_loop": "custom_loop",
         "CustomLoop": "custom_loop", "cross_entropy_step": "custom_loop"}

__all__ = ["LOOPS", "ModelDir", "TrainOptions", "TrainOptionsError", *_LAZY]

__getattr__ = _lazy.attributes(__name__, _LAZY)
