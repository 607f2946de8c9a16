"""Experiment configs: defaults, YAML, overrides, and their errors."""

import dataclasses
import os

import pytest

from tfdist import config as config_lib
from tfdist.data import DataSourceError
from tfdist.train import TrainOptionsError
from tests.helpers import REPO

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


@pytest.mark.parametrize("layer, error, message", [
    ({"train": {"model_dir": ["a"]}}, config_lib.ConfigError,
     r"`train.model_dir` \(\['a'\]\) must be a string"),
    ({"train": {"model_dir": "a\0b"}}, config_lib.ConfigError,
     "`train.model_dir` must be a path without NUL"),
    ({"data": {"data_dir": {"x": 1}}}, config_lib.ConfigError,
     "`data.data_dir` .* must be a string or null"),
    ({"model": {"name": 7}}, config_lib.ConfigError, r"`model.name` \(7\) must be a string"),
    ({"model": {"name": ":build"}}, Exception, r"`model.name` \(':build'\) must be one of"),
    ({"model": {"name": "..pkg:build"}}, Exception, "`model.name`"),
    ({"data": {"dataset": "tfds:"}}, DataSourceError, r"`data.dataset` \('tfds:'\)"),
    ({"data": {"dataset": "tfds:../../etc"}}, DataSourceError, "must be mnist5k, tfds:NAME"),
    ({"train": {"epochs": "x" * 10_000}}, config_lib.ConfigError,
     r"`train.epochs` \('xxx.*\.\.\.\) must"),
    ({"strategy": {"startup_timeout_s": [1]}}, config_lib.ConfigError,
     "`strategy.startup_timeout_s`"),
    ({"train": {"sparse_updates": "lazy"}}, Exception,
     r"`train.sparse_updates` \('lazy'\) must be one of auto, rows, dense"),
    ({"train": {"deterministic": True, "seed": None}}, Exception,
     r"`train.deterministic` needs `train.seed`"),
    ({"train": {"deterministic": "yes"}}, config_lib.ConfigError, "`train.deterministic`"),
    ({1: {}}, config_lib.ConfigError, "`1`: unknown config section"),
    ({"train": {("a",): 1}}, config_lib.ConfigError, "unknown key"),
])
def test_values_of_every_wrong_type_name_the_field(layer, error, message):
  with pytest.raises(error, match=message) as raised:
    config_lib.build(layer)
  assert len(str(raised.value)) < 300 and "\n" not in str(raised.value)


def test_paths_expand_the_home_dir(tmp_path, monkeypatch):
  monkeypatch.setenv("HOME", str(tmp_path))
  config = config_lib.build({"train": {"model_dir": "~/run"}, "data": {"data_dir": "~/tfds"}})
  assert config.train.model_dir == str(tmp_path / "run")
  assert config.data.data_dir == str(tmp_path / "tfds")
  (tmp_path / "job.yaml").write_text("train: {epochs: 2}\n")
  assert config_lib.read_yaml("~/job.yaml") == {"train": {"epochs": 2}}


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe\x00t\x00r", "--config: .* is not UTF-8 text"),
    (b"train: {epochs: 2}\n" + b"#" * (2 << 20), "--config: .* bytes; expected a YAML/JSON file"),
    (b"train: " + b"[" * 5000, "--config: .*(nested too deeply|not valid YAML)"),
    (b"train: {epochs: 2}\n  bad indent: [", "--config: .* is not valid YAML/JSON at line"),
])
def test_malformed_config_files_are_one_error(tmp_path, content, message):
  path = tmp_path / "job.yaml"
  path.write_bytes(content)
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.read_yaml(str(path))


def test_an_empty_config_file_means_the_defaults(tmp_path):
  path = tmp_path / "job.yaml"
  path.write_bytes(b"")
  assert config_lib.build(config_lib.read_yaml(str(path))) == config_lib.build()


def test_overrides_that_are_not_yaml_stay_strings():
  assert config_lib.parse_overrides("model.name=" + "[" * 5000) == {"model": {"name": "[" * 5000}}


def test_steps_per_loop_is_a_deprecated_name_of_steps_per_execution(caplog):
  from tfdist import config as config_lib
  config = config_lib.build({"train": {"steps_per_loop": 4}})
  assert config.train.steps_per_execution == 4
  assert "`train.steps_per_loop` is deprecated: it is now `train.steps_per_execution`" in \
      caplog.text
  with pytest.raises(config_lib.ConfigError, match="give only `train.steps_per_execution`"):
    config_lib.build({"train": {"steps_per_loop": 4, "steps_per_execution": 8}})
  later = config_lib.build({"train": {"steps_per_execution": 8}}, {"train": {"steps_per_loop": 2}})
  assert later.train.steps_per_execution == 2  # a later layer wins, under either name
