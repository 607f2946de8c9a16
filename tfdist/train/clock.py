"""How fast training starts and trains: time to the first step, examples/s, the CPU time
each step costs this process, and the bytes it sends and receives on its own link."""

from __future__ import annotations

import time
from typing import Callable, Optional

from tfdist.cluster import network

_OWN_LINK = object()  # EpochClock(link=...) default: this task's link, if it has one


class EpochClock:
  """Each epoch's examples/s and this process's CPU time per step (all its threads: input,
  saves and training), both averaged over the epochs after the first, which traces; the
  wall time per step without the epoch's saves; and on a task with a link of its own
  (`tfdist launch --link`), the bytes it sent and received per step.

  Example:
    clock = EpochClock(global_batch_size=64)
    clock.start()                  # at the epoch's first step
    clock.steps_ended()            # its last step is done (before its saves)
    rate = clock.stop(steps=120)   # after its saves
  """

  def __init__(self, global_batch_size: int,
               link: Optional[Callable[[], tuple[int, int]]] = _OWN_LINK):  # type: ignore
    self.global_batch_size = global_batch_size
    self._link = network.link_counters() if link is _OWN_LINK else link
    self._link_at_start = (0, 0)
    self.link_bytes_per_step: list[tuple[float, float]] = []  # (received, sent)
    self.rates: list[float] = []
    self.cpu_seconds_per_step: list[float] = []
    self.seconds_per_step: list[float] = []  # saves excluded
    self.last_seconds = 0.0  # the last epoch's
    self._wall = self._cpu = 0.0
    self._steps_ended: Optional[float] = None

  def start(self) -> None:
    self._wall, self._cpu = time.perf_counter(), time.process_time()
    self._steps_ended = None
    if self._link is not None:
      self._link_at_start = self._link()

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
    if self._link is not None:
      now = self._link()
      self.link_bytes_per_step.append(tuple(
          (end - begin) / steps for begin, end in zip(self._link_at_start, now)))
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


  @property
  def wire_bytes_per_step(self) -> Optional[dict]:
    """{"sent": ..., "received": ...}: bytes per step on this task's link (the epochs after
    the first); None without a link of its own."""
    if not self.link_bytes_per_step:
      return None
    received = _mean_after_first([r for r, _ in self.link_bytes_per_step])
    sent = _mean_after_first([s for _, s in self.link_bytes_per_step])
    return {"sent": round(sent), "received": round(received)}


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
