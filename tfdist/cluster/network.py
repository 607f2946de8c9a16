"""This task's network interface, when the launcher gave it one of its own (an emulated link,
launch/emulated_link.py): its name comes in TFDIST_LINK_INTERFACE, and its byte counters say
what the task sent and received."""

from __future__ import annotations

import os
from typing import Callable, Optional

LINK_INTERFACE_VAR = "TFDIST_LINK_INTERFACE"  # set by `tfdist launch --link`
LINK_RATE_VAR = "TFDIST_LINK"                 # the link's rate, as given (e.g. 1gbit)


def interface_bytes(name: str, proc_net_dev: str = "/proc/net/dev") -> tuple[int, int]:
  """(received, sent) bytes of interface `name` in this process's network namespace.

  Raises:
    KeyError: no such interface.
  """
  with open(proc_net_dev, encoding="ascii") as table:
    for line in table:
      interface, _, counters = line.partition(":")
      if interface.strip() == name and counters:
        fields = counters.split()
        return int(fields[0]), int(fields[8])  # rx bytes, then 7 rx fields, then tx bytes
  raise KeyError(f"no network interface {name!r} in {proc_net_dev}")


def link_counters() -> Optional[Callable[[], tuple[int, int]]]:
  """A reader of (received, sent) bytes on this task's own link, or None without one."""
  name = os.environ.get(LINK_INTERFACE_VAR)
  if not name:
    return None
  try:
    interface_bytes(name)
  except (OSError, KeyError):
    return None
  return lambda: interface_bytes(name)
