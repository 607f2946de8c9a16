"""`tfdist launch --link=RATE`: every task in a network namespace of its own, its traffic
shaped to RATE, so a job on one machine sends its bytes as over a real network between
machines.

The job's network (Linux, root: CAP_NET_ADMIN):

    namespace tfdist-<launcher pid>-hub:  bridge br0, with one veth end per task (v0, v1, ...)
    namespace tfdist-<launcher pid>-t<i>: the veth's other end `link0`, 10.77.0.<i+1>/24, its
                                          egress shaped by a tbf qdisc to RATE; loopback up

Nothing is created outside these namespaces and no address leaves them: deleting the
namespaces removes their veths and qdiscs with them. The launcher deletes them when the
job ends however it ends; after a SIGKILL, which it cannot catch, the next `tfdist launch
--link` (or `tfdist launch --remove_links`) deletes those of launchers that no longer run.

A delay (`--link=1gbit:0.2ms`) needs the netem qdisc; without it, one line says so.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from typing import Mapping, Optional, Sequence

from tfdist._processes import process_exists
from tfdist.cluster import TaskId
from tfdist.cluster.network import LINK_INTERFACE_VAR, LINK_RATE_VAR

PREFIX = "tfdist-"
INTERFACE = "link0"  # every task's own end, in its own namespace
SUBNET = "10.77.0"
_RATE_UNITS = {"kbit": 10 ** 3, "mbit": 10 ** 6, "gbit": 10 ** 9}
_RATE = re.compile(r"^(\d+(?:\.\d+)?)(kbit|mbit|gbit)$", re.IGNORECASE)
_DELAY = re.compile(r"^(\d+(?:\.\d+)?)(ms|us)$", re.IGNORECASE)
# A namespace of this launcher or of an earlier one: tfdist-<pid>-hub, tfdist-<pid>-t<i>.
_OWNED = re.compile(rf"^{PREFIX}(\d+)-(hub|t\d+)$")


class LinkError(ValueError):
  """The link cannot be emulated (bad --link, not root, no netem); the message says why."""


@dataclasses.dataclass(frozen=True)
class Link:
  """A link's rate (and delay), e.g. `Link.parse("1gbit")`."""

  text: str
  bits_per_s: int
  delay: Optional[str] = None  # tc's words, e.g. "0.2ms"

  @classmethod
  def parse(cls, text: str) -> "Link":
    """`RATE[:DELAY]`: 100mbit, 1gbit, 10gbit; a delay as 0.2ms or 200us."""
    rate, _, delay = str(text).strip().partition(":")
    match = _RATE.match(rate)
    if not match or float(match.group(1)) <= 0:
      raise LinkError(f"--link: {text!r} is not a rate; expected RATE[:DELAY] with RATE like "
                      "100mbit, 1gbit or 10gbit (and DELAY like 0.2ms)")
    if delay and not _DELAY.match(delay):
      raise LinkError(f"--link: the delay {delay!r} is not a time; expected e.g. 0.2ms or 200us")
    bits = int(float(match.group(1)) * _RATE_UNITS[match.group(2).lower()])
    return cls(text=str(text).strip(), bits_per_s=bits, delay=delay.lower() or None)


def check_host() -> None:
  """Raises LinkError unless this process can make network namespaces: Linux, root's
  CAP_NET_ADMIN and CAP_SYS_ADMIN (`ip netns add` mounts), `ip` and `tc`."""
  if not sys.platform.startswith("linux"):
    raise LinkError(f"--link: emulated links need Linux network namespaces; this is {sys.platform}")
  if not _has_capabilities(_CAP_NET_ADMIN, _CAP_SYS_ADMIN):
    raise LinkError("--link: emulated links need root (CAP_NET_ADMIN and CAP_SYS_ADMIN, to make "
                    "network namespaces and shape them with tc); run as root or without --link")
  missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
  if missing:
    raise LinkError(f"--link: {' and '.join(missing)} not found (iproute2); install it or "
                    "run without --link")


_CAP_NET_ADMIN, _CAP_SYS_ADMIN = 12, 21


def _has_capabilities(*bits: int, status: str = "/proc/self/status") -> bool:
  """This process's effective capabilities include every one of `bits`."""
  try:
    with open(status, encoding="ascii") as lines:
      effective = next(int(line.split()[1], 16) for line in lines if line.startswith("CapEff:"))
  except (OSError, StopIteration, ValueError):
    return os.geteuid() == 0
  return all(effective >> bit & 1 for bit in bits)


def _run(*args: str) -> None:
  done = subprocess.run(list(args), capture_output=True, text=True, check=False)
  if done.returncode:
    detail = (done.stderr.strip() or done.stdout.strip() or f"status {done.returncode}")
    raise LinkError(f"--link: `{' '.join(args)}` failed: {detail.splitlines()[0]}")


def namespaces() -> list[str]:
  """The network namespaces of this machine."""
  listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
  return [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]


def remove_stale() -> list[str]:
  """Deletes the namespaces of tfdist launchers that no longer run; returns their names."""
  removed = []
  for name in namespaces():
    match = _OWNED.match(name)
    if match and not process_exists(int(match.group(1))):
      subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
      removed.append(name)
  return removed


class EmulatedNetwork:
  """One job's network: a namespace per task, joined by veths on a bridge, shaped to `link`.

  Example:
    with EmulatedNetwork(Link.parse("1gbit"), spec.tasks()) as network:
      spec = spec.with_hosts(network.hosts)
      command = network.command(task, ["tfdist", "train"])
  """

  def __init__(self, link: Link, tasks: Sequence[TaskId], owner: Optional[int] = None):
    self.link = link
    self.tasks = list(tasks)
    owner = os.getpid() if owner is None else owner
    self.hub = f"{PREFIX}{owner}-hub"
    self._names = {task: f"{PREFIX}{owner}-t{i}" for i, task in enumerate(self.tasks)}
    self.hosts: Mapping[TaskId, str] = {task: f"{SUBNET}.{i + 1}"
                                        for i, task in enumerate(self.tasks)}
    self._created: list[str] = []

  def __enter__(self) -> "EmulatedNetwork":
    try:
      self.create()
    except BaseException:
      self.remove()
      raise
    return self

  def __exit__(self, *exc) -> None:
    self.remove()

  def namespace(self, task: TaskId) -> str:
    return self._names[task]

  def create(self) -> None:
    """Makes the namespaces, veths, addresses and qdiscs.

    Raises:
      LinkError: a command failed (e.g. no netem for a delay); what was made stays for
        `remove`.
    """
    if len(self.tasks) > 250:
      raise LinkError(f"--link: at most 250 tasks on an emulated network ({len(self.tasks)})")
    self._add_namespace(self.hub)
    _run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
    _run("ip", "-n", self.hub, "link", "set", "br0", "up")
    for i, task in enumerate(self.tasks):
      name = self._names[task]
      self._add_namespace(name)
      _run("ip", "-n", self.hub, "link", "add", f"v{i}", "type", "veth", "peer", "name",
           INTERFACE, "netns", name)
      _run("ip", "-n", self.hub, "link", "set", f"v{i}", "master", "br0", "up")
      _run("ip", "-n", name, "link", "set", "lo", "up")
      _run("ip", "-n", name, "addr", "add", f"{self.hosts[task]}/24", "dev", INTERFACE)
      _run("ip", "-n", name, "link", "set", INTERFACE, "up")
      self._shape(name)

  def _add_namespace(self, name: str) -> None:
    _run("ip", "netns", "add", name)
    self._created.append(name)

  def _shape(self, name: str) -> None:
    """The task's egress at the link's rate: tbf, with a burst of 4 ms at that rate (at least
    256 KiB: veths pass 64 KiB segments whole, and tbf drops a packet larger than its burst)."""
    burst = max(self.link.bits_per_s // 8 // 250, 256 << 10)
    _run("tc", "-n", name, "qdisc", "add", "dev", INTERFACE, "root", "handle", "1:", "tbf",
         "rate", f"{self.link.bits_per_s}bit", "burst", str(burst), "latency", "50ms")
    if self.link.delay:
      try:
        _run("tc", "-n", name, "qdisc", "add", "dev", INTERFACE, "parent", "1:1", "handle",
             "10:", "netem", "delay", self.link.delay)
      except LinkError as e:
        raise LinkError(f"--link: a delay ({self.link.delay}) needs the netem qdisc, which this "
                        f"kernel does not offer ({str(e).rsplit(': ', 1)[-1]}); give a rate "
                        "only, e.g. --link=" + self.link.text.split(":")[0]) from None

  def command(self, task: TaskId, command: Sequence[str]) -> list[str]:
    """`command` run in `task`'s namespace (`ip netns exec` execs it: the pid stays)."""
    return ["ip", "netns", "exec", self._names[task], *command]

  def environment(self) -> dict[str, str]:
    """What a task is told of its link (cluster/network.py reads it)."""
    return {LINK_INTERFACE_VAR: INTERFACE, LINK_RATE_VAR: self.link.text}

  def remove(self) -> None:
    """Deletes every namespace made (their veths and qdiscs go with them)."""
    for name in reversed(self._created):
      subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
    self._created.clear()
