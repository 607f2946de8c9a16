"""The model registry for the CLI, and loading a user's `module:function`."""

from tfdist.models.registry import REGISTRY, ModelError, ModelFn, ModelOptions, resolve

__all__ = ["REGISTRY", "ModelError", "ModelFn", "ModelOptions", "resolve"]
