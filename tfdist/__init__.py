"""tfdist: from one device to a cluster with the same Keras training code.

Models may be Keras 3 (`import keras`) or tf_keras (Keras 2). Unless the user set
TF_USE_LEGACY_KERAS, it is set to 1 before TensorFlow is imported, so that `tf.keras`
in user code means tf_keras, as it always has with tfdist; set it to 0 and `tf.keras`
is Keras 3, which tfdist trains too.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

__version__ = "0.1.0"

from tfdist import _lazy  # noqa: E402  (after the environment: nothing here imports TensorFlow)

# `tfdist.run(config, model_fn=..., data_fn=...)`: the library's one entry point (tfdist/job.py).
__getattr__ = _lazy.attributes(__name__, {"run": "job", "Job": "job",
                                          "ExperimentConfig": "config"})
