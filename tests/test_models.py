"""The model registry and users' `module:function` models."""

import sys
import textwrap

import pytest

from tfdist.models import ModelError, ModelOptions, resolve


def test_registry_models_build_and_output_logits():
  for name in ("cnn", "mlp"):
    model = resolve(name)(input_shape=(28, 28, 1), num_classes=10)
    assert model.output_shape == (None, 10)
    assert model.layers[-1].activation.__name__ == "linear"


@pytest.fixture
def user_module(tmp_path, monkeypatch):
  (tmp_path / "my_models.py").write_text(textwrap.dedent("""
      import tensorflow as tf
      def tiny(input_shape, num_classes):
          return tf.keras.Sequential([tf.keras.layers.Flatten(input_shape=input_shape),
                                      tf.keras.layers.Dense(num_classes)])
      def no_args():
          return tf.keras.Sequential([tf.keras.layers.Flatten(input_shape=(28, 28, 1)),
                                      tf.keras.layers.Dense(10, activation="softmax")])
      def not_a_model(**kwargs):
          return 42
      VALUE = 3
  """))
  monkeypatch.syspath_prepend(str(tmp_path))
  yield "my_models"
  sys.modules.pop("my_models", None)


def test_user_functions_get_the_arguments_they_declare(user_module):
  assert resolve(f"{user_module}:tiny")(input_shape=(28, 28, 1), num_classes=7).output_shape == (None, 7)
  assert resolve(f"{user_module}:no_args")(input_shape=(28, 28, 1), num_classes=10).output_shape == (None, 10)


@pytest.mark.parametrize("name, message", [
    ("resnet", r"`model.name` \('resnet'\) must be one of cnn, mlp"),
    ("no_such_module:f", "cannot import 'no_such_module'"),
    ("my_models:missing", "has no function 'missing'"),
    ("my_models:VALUE", "has no function 'VALUE'"),
])
def test_bad_model_names(user_module, name, message):
  with pytest.raises(ModelError, match=message):
    resolve(name)


def test_user_function_must_return_a_keras_model(user_module):
  with pytest.raises(ModelError, match="returned builtins.int; expected a Keras model"):
    resolve(f"{user_module}:not_a_model")(input_shape=(28, 28, 1), num_classes=10)


def test_model_options_check_the_name():
  with pytest.raises(ModelError):
    ModelOptions(name="vgg")
  assert ModelOptions(name="pkg.mod:fn").name == "pkg.mod:fn"


@pytest.mark.parametrize("source, message", [
    ("def build(:\n  pass\n",
     r"importing 'broken_models' raised SyntaxError: .*broken_models.py:1"),
    ("import no_such_dependency_xyz\n", "cannot import 'broken_models'"),
    ("x = 1 / 0\n",
     r"importing 'broken_models' raised ZeroDivisionError: division by zero \(.*broken_models.py:1\)"),
])
def test_a_user_module_that_fails_to_import_is_one_error(tmp_path, monkeypatch, source, message):
  (tmp_path / "broken_models.py").write_text(source)
  monkeypatch.syspath_prepend(str(tmp_path))
  try:
    with pytest.raises(ModelError, match=message):
      resolve("broken_models:build")
  finally:
    sys.modules.pop("broken_models", None)


def test_the_weights_fingerprint_is_the_weights_not_their_file(tmp_path):
  import tf_keras  # pylint: disable=import-outside-toplevel
  from tfdist.models import generations  # pylint: disable=import-outside-toplevel
  build = lambda seed: (tf_keras.utils.set_random_seed(seed),  # noqa: E731
                        resolve("mlp")(input_shape=(4, 4, 1), num_classes=3))[1]
  first, same, other = build(1), build(1), build(2)
  digest = generations.weights_sha256(first)
  assert len(digest) == 64 and digest == generations.weights_sha256(same)
  assert digest != generations.weights_sha256(other)
  generations.save_weights(first, str(tmp_path / "ckpt"))  # restored: equal again
  generations.load_weights(other, str(tmp_path / "ckpt")).expect_partial()
  assert generations.weights_sha256(other) == digest
  kernel = other.weights[0]
  kernel.assign(kernel + 1e-7)  # one changed value changes it
  assert generations.weights_sha256(other) != digest
