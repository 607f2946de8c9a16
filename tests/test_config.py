"""Experiment configs: defaults, YAML, overrides, and their errors."""

import dataclasses
import os

import pytest

from tfdist.cli import config as config_lib
from tfdist.data import DataSourceError
from tfdist.train import TrainOptionsError
from tests.conftest import REPO

DEFAULT_YAML = os.path.join(REPO, "configs", "experiments", "mnist5k.yaml")


def test_default_job_file_is_the_built_in_default():
  from_file = config_lib.build(config_lib.read_yaml(DEFAULT_YAML))
  assert from_file == config_lib.build()
  # Every field is spelled out in the file, so it documents all options.
  raw = config_lib.read_yaml(DEFAULT_YAML)
  for section, cls in config_lib.SECTIONS.items():
    assert set(raw[section]) == {f.name for f in dataclasses.fields(cls)}


def test_layers_later_wins():
  config = config_lib.build(
      {"train": {"epochs": 5}, "data": {"global_batch_size": 32}},
      config_lib.parse_overrides("train.epochs=3, strategy.name=mirrored"),
      {"data": {"global_batch_size": 128}})
  assert config.train.epochs == 3
  assert config.strategy.name == "mirrored"
  assert config.data.global_batch_size == 128


def test_overrides_parse_yaml_scalars():
  assert config_lib.parse_overrides("train.learning_rate=0.01,train.seed=null,data.download=true") \
      == {"train": {"learning_rate": 0.01, "seed": None}, "data": {"download": True}}
  assert config_lib.build({"train": {"learning_rate": 1}}).train.learning_rate == 1.0
  assert config_lib.build({"train": {"learning_rate": "1e-2"}}).train.learning_rate == 0.01


@pytest.mark.parametrize("layer, error, message", [
    ({"trian": {"epochs": 1}}, config_lib.ConfigError, "`trian`: unknown config section"),
    ({"train": {"epoch": 1}}, config_lib.ConfigError, "`train.epoch`: unknown key; expected one of"),
    ({"train": {"epochs": "3"}}, config_lib.ConfigError, r"`train.epochs` \('3'\) must be an integer"),
    ({"train": {"epochs": True}}, config_lib.ConfigError, "`train.epochs` .* must be an integer"),
    ({"train": {"epochs": None}}, config_lib.ConfigError, "`train.epochs`: must not be empty"),
    ({"train": {"epochs": 0}}, TrainOptionsError, r"`train.epochs` \(0\) must be a positive integer"),
    ({"train": {"loop": "keras"}}, TrainOptionsError, "`train.loop`"),
    ({"train": {"learning_rate": -1.0}}, TrainOptionsError, "`train.learning_rate`"),
    ({"data": {"global_batch_size": -4}}, DataSourceError, "`data.global_batch_size`"),
    ({"data": {"dataset": "imagenet"}}, DataSourceError, r"`data.dataset` \('imagenet'\)"),
    ({"train": 3}, config_lib.ConfigError, "`train`: expected a mapping"),
])
def test_invalid_config_names_the_field(layer, error, message):
  with pytest.raises(error, match=message):
    config_lib.build(layer)


def test_bad_override_syntax():
  with pytest.raises(config_lib.ConfigError, match="must be section.key=value"):
    config_lib.parse_overrides("epochs=3")


def test_bad_yaml_files(tmp_path):
  bad = tmp_path / "bad.yaml"
  bad.write_text("train: [\n")
  with pytest.raises(config_lib.ConfigError, match="is not valid YAML"):
    config_lib.read_yaml(str(bad))
  bad.write_text("- 1\n")
  with pytest.raises(config_lib.ConfigError, match="must be a mapping of sections"):
    config_lib.read_yaml(str(bad))
  with pytest.raises(config_lib.ConfigError, match="no such file"):
    config_lib.read_yaml(str(tmp_path / "missing.yaml"))
