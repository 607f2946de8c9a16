"""How fast training starts and trains: time to the first step, examples/s, and the CPU time
each step costs this process."""

from __future__ import annotations

import time
from typing import Optional


class EpochClock:
  """Each epoch's examples/s and this process's CPU time per step (all its threads: input,
  saves and training), both averaged over the epochs after the first, which traces; and
  the wall time per step without the epoch's saves.

  Example:
    clock = EpochClock(global_batch_size=64)
    clock.start()                  # at the epoch's first step
    clock.steps_ended()            # its last step is done (before its saves)
    rate = clock.stop(steps=120)   # after its saves
  """

  def __init__(self, global_batch_size: int):
    self.global_batch_size = global_batch_size
    self.rates: list[float] = []
    self.cpu_seconds_per_step: list[float] = []
    self.seconds_per_step: list[float] = []  # saves excluded
    self.last_seconds = 0.0  # the last epoch's
    self._wall = self._cpu = 0.0
    self._steps_ended: Optional[float] = None

  def start(self) -> None:
    self._wall, self._cpu = time.perf_counter(), time.process_time()
    self._steps_ended = None

  def steps_ended(self) -> None:
    """The epoch's steps are done; what follows until `stop` is saving."""
    self._steps_ended = time.perf_counter()

  def stop(self, steps: int) -> Optional[float]:
    """Ends the epoch begun by `start` after `steps` steps; returns its examples/s."""
    self.last_seconds = seconds = time.perf_counter() - self._wall
    if steps <= 0 or seconds <= 0:
      return None
    self.rates.append(steps * self.global_batch_size / seconds)
    self.cpu_seconds_per_step.append((time.process_time() - self._cpu) / steps)
    if self._steps_ended is not None:
      self.seconds_per_step.append((self._steps_ended - self._wall) / steps)
    return self.rates[-1]

  @property
  def examples_per_sec(self) -> Optional[float]:
    return _mean_after_first(self.rates)

  @property
  def cpu_ms_per_step(self) -> Optional[float]:
    mean = _mean_after_first(self.cpu_seconds_per_step)
    return None if mean is None else mean * 1000

  @property
  def step_ms(self) -> Optional[float]:
    """Wall ms per step, saves excluded (the epochs after the first)."""
    mean = _mean_after_first(self.seconds_per_step)
    return None if mean is None else mean * 1000


def _mean_after_first(values: list[float]) -> Optional[float]:
  later = values[1:] or values
  return sum(later) / len(later) if later else None


def seconds_until_done(started: float, step_result=None) -> float:
  """Seconds from `started` (a time.perf_counter()) until `step_result`'s step is done.

  Under ParameterServerStrategy a step's result is a RemoteValue, returned as soon as
  the step is scheduled: this waits (`fetch`) for a worker to finish it, so call it
  once (for the first step), not per step. Other results are already computed.
  """
  if hasattr(step_result, "fetch"):
    step_result.fetch()
  return time.perf_counter() - started
