"""Experiment configs: YAML sections, `--params_override`, and flags, in that order.

    cluster:  {slurm_tasks: ""}       # how to read a SLURM step (TF_CONFIG needs nothing)
    model:    {name: cnn}
    data:     {dataset: mnist5k, global_batch_size: 64}
    strategy: {name: auto, cpu_replicas: 0}
    train:    {epochs: 10, model_dir: /tmp/tfdist/mnist5k}

Each section is the options dataclass of its layer; a later source wins:
built-in defaults < --config file < --params_override < explicitly given flags.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any, Mapping

import yaml
from absl import logging

from tfdist import _input
from tfdist.cluster import ClusterOptions
from tfdist.data import DataOptions
from tfdist.models import ModelOptions
from tfdist.strategy import StrategyOptions
from tfdist.train import TrainOptions

SECTIONS: dict[str, type] = {
    "cluster": ClusterOptions,
    "model": ModelOptions,
    "data": DataOptions,
    "strategy": StrategyOptions,
    "train": TrainOptions,
}


# Paths a user may write as `~/...`.
_PATH_FIELDS = ("train.model_dir", "data.data_dir", "train.init_checkpoint")
# Old names still read, with a warning: (section, old key) -> new key.
DEPRECATED_KEYS = {("train", "steps_per_loop"): "steps_per_execution"}


class ConfigError(ValueError):
  """The experiment config is invalid; the message names the field."""


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  cluster: ClusterOptions
  model: ModelOptions
  data: DataOptions
  strategy: StrategyOptions
  train: TrainOptions

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def as_config(value: "ExperimentConfig | Mapping | str | None") -> ExperimentConfig:
  """An ExperimentConfig from itself, {section: {key: value}} over the defaults, a YAML
  file's path, or None (the defaults).

  Example:
    as_config({"train": {"epochs": 3}, "data": {"global_batch_size": 128}})
  """
  if isinstance(value, ExperimentConfig):
    return value
  if value is None:
    return build()
  if isinstance(value, str):
    return build(read_yaml(value))
  if isinstance(value, Mapping):
    return build(value)
  raise ConfigError(f"config ({type(value).__name__}) must be an ExperimentConfig, a mapping of "
                    f"sections ({', '.join(SECTIONS)}) or a YAML file's path")


def read_yaml(path: str) -> dict:
  """Reads a config file into {section: {key: value}}.

  Raises:
    ConfigError: missing file, bad YAML, or not a mapping of sections.
  """
  content = _input.load_yaml_file(os.path.expanduser(path), "--config", ConfigError)
  return _sections(content, f"--config: {path}")


def parse_yaml_text(text: str, field: str) -> dict:
  """A config's text (e.g. a run's params.yaml, read through tf.io.gfile) into sections."""
  try:
    content = yaml.safe_load(text)
  except (yaml.YAMLError, RecursionError):
    raise ConfigError(f"{field} is not valid YAML") from None
  return _sections(content, field)


def _sections(content: Any, field: str) -> dict:
  if content is None:
    return {}  # An empty file: the defaults.
  if not isinstance(content, dict):
    raise ConfigError(f"{field} must be a mapping of sections ({', '.join(SECTIONS)})")
  return content


def to_yaml(config: ExperimentConfig, header: str = "") -> str:
  """Every field of `config`, as a config file (`read_yaml` reads it back to the same config)."""
  text = yaml.safe_dump(config.as_dict(), sort_keys=False, default_flow_style=False)
  return (header.rstrip("\n") + "\n" if header else "") + text


def parse_overrides(text: str) -> dict:
  """Parses `a.b=1,c.d=x` into {"a": {"b": 1}, "c": {"d": "x"}}; values are YAML scalars.

  Raises:
    ConfigError: an item without `section.key=value`.
  """
  result: dict = {}
  for item in filter(None, (part.strip() for part in text.split(","))):
    key, sep, value = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not name:
      raise ConfigError(
          f"--params_override: {item!r} must be section.key=value, e.g. train.epochs=3")
    try:
      parsed = yaml.safe_load(value) if value.strip() else None
    except (yaml.YAMLError, RecursionError):
      parsed = value
    result.setdefault(section, {})[name] = parsed
  return result


def build(*layers: Mapping[str, Mapping[str, Any]]) -> ExperimentConfig:
  """Merges layers of {section: {key: value}} over the defaults and validates once.

  Raises:
    ConfigError / the sections' own errors: naming `section.key`.
  """
  merged: dict[str, dict] = {name: {} for name in SECTIONS}
  for layer in layers:
    for section, values in layer.items():
      if section not in SECTIONS:
        raise ConfigError(
            f"`{str(section)[:40]}`: unknown config section; expected {', '.join(SECTIONS)}")
      if not isinstance(values, Mapping):
        raise ConfigError(f"`{section}`: expected a mapping of keys to values")
      known = {f.name for f in dataclasses.fields(SECTIONS[section])}
      for given_key, value in values.items():
        key = _current_name(section, given_key)
        if key != given_key and key in values:
          raise ConfigError(f"`{section}.{given_key}` and `{section}.{key}` are the same option "
                            f"(the first is its old name); give only `{section}.{key}`")
        if key not in known:
          raise ConfigError(f"`{section}.{str(key)[:40]}`: unknown key; expected one of "
                            f"{', '.join(sorted(known))}")
        merged[section][key] = value
  sections = {}
  for name, cls in SECTIONS.items():
    hints = typing.get_type_hints(cls)
    values = {key: _coerce(f"{name}.{key}", value, hints[key])
              for key, value in merged[name].items()}
    sections[name] = cls(**values)
  return ExperimentConfig(**sections)


def _current_name(section: str, key: Any) -> Any:
  """`key`, or the name that replaced it (with a warning on stderr)."""
  new = DEPRECATED_KEYS.get((section, key))
  if new is None:
    return key
  logging.warning("`%s.%s` is deprecated: it is now `%s.%s` (the same option for both loops)",
                  section, key, section, new)
  return new


def _coerce(field: str, value: Any, hint: Any) -> Any:
  """Checks a value against its field's type; ints are accepted for floats."""
  optional = type(None) in typing.get_args(hint)
  if value is None:
    if optional:
      return None
    raise ConfigError(f"`{field}`: must not be empty")
  base = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if optional else hint
  if base is float and isinstance(value, (int, str)) and not isinstance(value, bool):
    try:
      return float(value)  # YAML 1.1 reads `1e-3` as a string.
    except ValueError:
      pass
  if base is int and isinstance(value, bool) or not isinstance(value, base):
    raise ConfigError(f"`{field}` ({_input.short(value, 40)}) must be {_type_name(base)}"
                      f"{' or null' if optional else ''}")
  if field in _PATH_FIELDS:
    if "\0" in value:
      raise ConfigError(f"`{field}` must be a path without NUL characters")
    # A shell leaves `~` alone after `--flag=`; so do YAML files.
    return os.path.expanduser(value)
  return value


def _type_name(t: type) -> str:
  return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
      t, t.__name__)

