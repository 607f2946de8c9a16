"""Exit statuses and one-line errors for every `tfdist` subcommand.

0 success; 2 a user error (bad flag, config, spec, TF_CONFIG), one line on
stderr naming the field; 1 a failure while running.
"""

from __future__ import annotations

import contextlib
import logging as std_logging
import os
import sys
import tempfile
from typing import Callable, Iterator, NoReturn, Sequence

from absl import app, flags, logging

from tfdist.config import ConfigError
from tfdist.cluster import EXIT_FAILURE, EXIT_OK, EXIT_USER_ERROR, ClusterSpecError
from tfdist.data import BatchError, DataSourceError
from tfdist.models import ModelError
from tfdist.strategy import StrategyError
from tfdist.strategy.startup import StartupError
from tfdist.train import TrainOptionsError

EXIT_USAGE = EXIT_USER_ERROR  # (EXIT_OK and EXIT_FAILURE come from tfdist.cluster too)

USER_ERRORS = (app.UsageError, flags.Error, ConfigError, ClusterSpecError, BatchError,
               DataSourceError, ModelError, StrategyError, TrainOptionsError)

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
    try:
      return main(args)
    except USER_ERRORS as e:
      usage_error(command, e)
    except ONE_LINE_FAILURES as e:
      usage_error(command, e, EXIT_FAILURE)

  app.run(guarded_main, argv=list(argv), flags_parser=parse_flags)
  raise AssertionError("app.run returned")  # app.run always exits.
