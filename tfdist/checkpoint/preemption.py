"""Preemption: a SIGTERM to any task saves the training state on every task at the same step,
then the task exits with EXIT_PREEMPTED ("restart me")."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any, Callable, Optional

import tensorflow as tf
from absl import logging

from tfdist.cluster import EXIT_PREEMPTED
from tfdist.strategy import kinds


def save_on_sigterm(strategy: tf.distribute.Strategy, manager: tf.train.CheckpointManager,
                    position: Callable[[], tuple[int, int]],
                    before_save: Optional[Callable[[], Any]] = None,
                    restore_from: Optional[tf.train.CheckpointManager] = None) -> Optional[Any]:
  """Makes a SIGTERM to any task save `manager`'s checkpoint on every task at the next step
  boundary, then exit with EXIT_PREEMPTED. Returns the handler (None where it cannot run:
  ParameterServerStrategy). Call `handler.save_checkpoint_if_preempted()` after each step, or
  let tf_keras's BackupAndRestore do it.

  TensorFlow's PreemptionCheckpointHandler does the agreeing between workers;
  `position()` gives (epoch from 1, steps done in it) for the one line it logs;
  `before_save()` runs just before that save (e.g. to record the step in the checkpoint).
  The handler restores the latest checkpoint of `restore_from` (default `manager`) when
  created: a non-chief worker, which writes into a directory of its own, must restore the
  chief's (its own may hold an older backup, e.g. one a kill cut short).
  """
  if kinds.uses_coordinator(strategy):
    return None
  _quiet_watcher_when_peers_end()

  def exit_preempted() -> None:
    epoch, step = position()
    logging.info("Preempted: training state saved at epoch %d after step %d; exiting with "
                 "status %d (restart me: the job resumes there)", epoch, step, EXIT_PREEMPTED)
    logging.flush()
    sys.stdout.flush()
    sys.exit(EXIT_PREEMPTED)

  def save(*args, **kwargs) -> None:
    if before_save is not None:
      before_save()
    manager.checkpoint.sync()  # a backup still being written in the background comes first
    manager.save(*args, **kwargs)  # in the foreground: the process exits right after

  return tf.distribute.experimental.PreemptionCheckpointHandler(
      strategy.cluster_resolver if kinds.spans_machines(strategy) else None, restore_from or manager,
      termination_config=tf.distribute.experimental.TerminationConfig(exit_fn=exit_preempted,
                                                                       save_fn=save))


def _quiet_watcher_when_peers_end() -> None:
  """TensorFlow's watcher thread asks the chief's coordination service whether a peer was
  preempted until the process ends; once the chief has ended first (a job's normal end) it
  dies with UnavailableError and a traceback. One log line says it instead."""
  previous = threading.excepthook
  if getattr(previous, "tfdist_quiet_watcher", False):
    return

  def hook(args) -> None:
    if (args.thread is not None and args.thread.name.startswith("PeerTerminationWatcher")
        and isinstance(args.exc_value, tf.errors.UnavailableError)):
      logging.info("Preemption watch over: a peer has ended (%s)",
                   str(args.exc_value).splitlines()[0])
      return
    previous(args)

  hook.tfdist_quiet_watcher = True
  threading.excepthook = hook


def stop_saving_on_sigterm() -> None:
  """After training, SIGTERM ends the process again (the handler's watch is over)."""
  signal.signal(signal.SIGTERM, signal.SIG_DFL)
