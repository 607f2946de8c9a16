"""How every `tfdist` subcommand runs: absl's app with exit statuses, one-line errors, and
quiet logs.

0 success; 2 a user error (bad flag, config, spec, TF_CONFIG), one line on
stderr naming the field; 1 a failure while running. Logs show tfdist's (and the
user's) INFO lines, and TensorFlow's warnings and errors, not TensorFlow's, Keras's or
TFDS's own Python INFO lines; absl's `--verbosity` (any value) brings those back.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging as std_logging
import os
import sys
import tempfile
from typing import Callable, Iterator, NoReturn, Sequence

from absl import app, flags, logging

from tfdist.checkpoint import CheckpointError
from tfdist.config import ConfigError
from tfdist.cluster import EXIT_FAILURE, EXIT_OK, EXIT_USER_ERROR, ClusterSpecError
from tfdist.data import BatchError, DataSourceError
from tfdist.launch.emulated_link import LinkError
from tfdist.models import ModelError
from tfdist.strategy import StrategyError
from tfdist.strategy.startup import StartupError
from tfdist.train import TrainOptionsError

EXIT_USAGE = EXIT_USER_ERROR  # (EXIT_OK and EXIT_FAILURE come from tfdist.cluster too)

USER_ERRORS = (app.UsageError, flags.Error, ConfigError, ClusterSpecError, BatchError,
               DataSourceError, ModelError, StrategyError, TrainOptionsError, CheckpointError,
               LinkError)

# Lines TensorFlow logs through absl on every run that tell a user nothing.
_NOISE = ("Sharding callback duration", "Found untraced functions",
          "contains input name(s)", "Writing fingerprint", "Assets written to",
          "Constructing tf.data.Dataset", "Creating a tf.data.Dataset reading",
          "Load dataset info from", "Reusing dataset", "Fields info.",
          "Waiting for all global closures", "triggered tf.function retracing",
          "then broadcast to", "Collective all_reduce", "Collective all-reduce",
          "PreemptionCheckpointHandler.total_run_calls")


# Failures whose message says all there is to say: one line, exit 1.
ONE_LINE_FAILURES = (StartupError,)


def usage_error(command: str, message: object, status: int = EXIT_USAGE) -> NoReturn:
  """Prints `tfdist COMMAND: error: MESSAGE` on one line and exits (2: a user error)."""
  first_line = str(message).strip().splitlines()[0] if str(message).strip() else "invalid input"
  print(f"tfdist {command}: error: {first_line}", file=sys.stderr, flush=True)
  sys.exit(status)


@contextlib.contextmanager
def native_stderr_to_log() -> Iterator[None]:
  """Holds back what native code writes to stderr meanwhile; logs it at DEBUG after.

  TensorFlow's C++ start-up lines (oneDNN, CUDA probing) ignore
  TF_CPP_MIN_LOG_LEVEL; a user error must still be the only line on stderr.
  """
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      held.seek(0)
      text = held.read().decode(errors="replace").strip()
      if text:
        logging.debug("native start-up output:\n%s", text)


class _QuietFilter(std_logging.Filter):

  def filter(self, record: std_logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(noise in message for noise in _NOISE)


# Libraries whose INFO lines describe their own workings ("Starting async checkpoint save",
# "Start watcher"): a user reads tfdist's lines and the Keras progress instead.
_LIBRARIES = ("tensorflow", "tf_keras", "keras", "tensorflow_datasets")


def _package_dirs(names: Sequence[str]) -> tuple[str, ...]:
  """The install dirs of the packages `names`, found without importing them."""
  dirs = []
  for name in names:
    try:
      spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
      spec = None
    dirs.extend(os.path.join(os.path.realpath(d), "") for d in
                (spec.submodule_search_locations or []) if spec is not None)
  return tuple(dirs)


class _LibraryInfoFilter(std_logging.Filter):
  """Drops INFO (and DEBUG) records logged from inside TensorFlow, Keras or TFDS."""

  def __init__(self):
    super().__init__()
    self._dirs = _package_dirs(_LIBRARIES)

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.WARNING:
      return True
    return not os.path.realpath(record.pathname).startswith(self._dirs)


def quiet_libraries() -> None:
  """Hides the libraries' Python INFO lines, unless `--verbosity` was given. (Their C++
  INFO lines are hidden by TF_CPP_MIN_LOG_LEVEL=1, which `import tfdist` sets by default.)"""
  if not flags.FLAGS["verbosity"].present:
    logging.get_absl_handler().addFilter(_LibraryInfoFilter())


def run_command(command: str, main: Callable[[Sequence[str]], int], argv: Sequence[str]) -> NoReturn:
  """absl's app.run, with flag errors and user errors mapped to one line and exit 2."""

  def parse_flags(args: list[str]) -> list[str]:
    if any(a in ("-h", "--help", "-help") for a in args[1:args.index("--") if "--" in args
                                                         else len(args)]):
      # The subcommand's own flags (absl's --help would list only its entry module's).
      print(f"tfdist {command} flags (--helpfull for absl's own):\n")
      print(flags.FLAGS.module_help(sys.modules[main.__module__]))
      sys.exit(EXIT_OK)
    try:
      return flags.FLAGS(args)
    except flags.Error as e:
      usage_error(command, e)

  def guarded_main(args: Sequence[str]) -> int:
    logging.get_absl_handler().addFilter(_QuietFilter())
    quiet_libraries()
    try:
      return main(args)
    except USER_ERRORS as e:
      usage_error(command, e)
    except ONE_LINE_FAILURES as e:
      usage_error(command, e, EXIT_FAILURE)

  app.run(guarded_main, argv=list(argv), flags_parser=parse_flags)
  raise AssertionError("app.run returned")  # app.run always exits.
