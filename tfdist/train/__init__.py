"""Training: the trainer and the loops it runs (Keras `fit`, Keras 3's train_step in tfdist's
loop, the custom loop), with their callbacks and loop actions.

Options import no TensorFlow; the trainer and the loops load on first use.
"""

from tfdist import _lazy
from tfdist.train.options import LOOPS, TrainOptions, TrainOptionsError

_LAZY = {"Trainer": "trainer", "train_with_fit": "fit",
         "train_with_custom_loop": "custom_loop", "CustomLoop": "custom_loop",
         "cross_entropy_step": "custom_loop"}

__all__ = ["LOOPS", "TrainOptions", "TrainOptionsError", *_LAZY]

__getattr__ = _lazy.attributes(__name__, _LAZY)
