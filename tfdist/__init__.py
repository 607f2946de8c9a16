"""tfdist: from one device to a cluster with the same Keras training code.

tfdist trains with Keras 2 (`tf_keras`); setting TF_USE_LEGACY_KERAS before
TensorFlow is imported makes a user's `tf.keras` the same Keras.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

__version__ = "0.1.0"

from tfdist import _lazy  # noqa: E402  (after the environment: nothing here imports TensorFlow)

# `tfdist.run(config, model_fn=..., data_fn=...)`: the library's one entry point (tfdist/job.py).
__getattr__ = _lazy.attributes(__name__, {"run": "job", "Job": "job",
                                          "ExperimentConfig": "config"})
