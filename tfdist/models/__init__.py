"""The model registry for the CLI, and loading a user's `module:function`.

Options and errors import no TensorFlow; the registry loads on first use.
"""

from tfdist import _lazy
from tfdist.models.options import BUILTIN_MODELS, ModelError, ModelOptions

_LAZY = {"REGISTRY": "registry", "ModelFn": "registry", "resolve": "registry",
         "with_known_arguments": "registry", "compile_if_needed": "compiling",
         "outputs_probabilities": "generations"}

__all__ = ["BUILTIN_MODELS", "ModelError", "ModelOptions", *_LAZY]

__getattr__ = _lazy.attributes(__name__, _LAZY)
