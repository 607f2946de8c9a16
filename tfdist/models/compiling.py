"""What tfdist compiles, and when it must not: an uncompiled model gets Adam, sparse
cross-entropy and accuracy only where the labels are class ids; any other model must come
compiled with its own loss (tfdist does not guess a regression loss)."""

from __future__ import annotations

from tfdist.models import generations
from tfdist.models.options import ModelError


def is_compiled(model) -> bool:
  """Compiled with an optimizer and a loss (either Keras)."""
  compiled = (model.compiled if generations.generation(model) == generations.KERAS3
              else model._is_compiled)  # pylint: disable=protected-access
  return compiled and getattr(model, "optimizer", None) is not None


def compile_if_needed(model, *, learning_rate: float, steps_per_execution: int,
                      class_ids: bool, where: str = "`model.name`"):
  """`model`, compiled by tfdist if it came uncompiled (Adam, sparse cross-entropy on logits,
  accuracy); a model the user compiled keeps its loss, metrics and steps_per_execution.

  Raises:
    ModelError: the model is uncompiled and the labels are not class ids.
  """
  if is_compiled(model):
    return model
  if not class_ids:
    raise ModelError(f"{where} returns an uncompiled model, and the labels are not class ids: "
                     "compile it with its loss (and metrics), e.g. model.compile(optimizer="
                     "'adam', loss='mse', metrics=['mae']); tfdist compiles only classifiers")
  library = generations.keras_of(generations.generation(model))
  model.compile(
      optimizer=library.optimizers.Adam(learning_rate),
      loss=library.losses.SparseCategoricalCrossentropy(
          from_logits=not generations.outputs_probabilities(model)),
      metrics=["accuracy"], steps_per_execution=steps_per_execution)
  return model
