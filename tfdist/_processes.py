"""Whether a process of this host still runs (for removing what ended processes left)."""

from __future__ import annotations

import os


def process_exists(pid: int) -> bool:
  """True while process `pid` runs here (a process of another user included)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  return True
