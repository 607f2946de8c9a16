"""`tfdist launch --link`: tasks in network namespaces of their own on a shaped link; the bytes
they send, measured against the computed; nothing left behind however the launcher ends."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import (REPO, THREAD_FLAGS, assert_usage_error, cli_env, read_metrics,
                           run_tfdist, start_launch)
from tfdist.cluster.network import interface_bytes
from tfdist.launch.emulated_link import Link, LinkError, _has_capabilities, namespaces

SPEC = os.path.join(REPO, "configs", "clusters", "local-2workers.yaml")
ROOT = os.geteuid() == 0 and sys.platform.startswith("linux")
needs_root = pytest.mark.skipif(
    not ROOT and not os.environ.get("TFDIST_REQUIRE_SYSTEM_TESTS"),
    reason="emulated links need root (CI runs as root)")

PROC_NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     120       2    0    0    0     0          0         0      120       2    0    0    0     0       0          0
 link0: 31498160     614    0    0    0     0          0         0    39246     593    0    0    0     0       0          0
"""


@pytest.mark.unit
@pytest.mark.parametrize("text, bits, delay", [
    ("1gbit", 10 ** 9, None), ("100mbit", 10 ** 8, None), ("2.5Gbit", 25 * 10 ** 8, None),
    ("1gbit:0.2ms", 10 ** 9, "0.2ms"), ("500kbit:200us", 5 * 10 ** 5, "200us"),
])
def test_link_rates_parse(text, bits, delay):
  link = Link.parse(text)
  assert (link.bits_per_s, link.delay) == (bits, delay)


@pytest.mark.unit
@pytest.mark.parametrize("text, words", [
    ("fast", "'fast' is not a rate"), ("1gb", "'1gb' is not a rate"),
    ("0mbit", "'0mbit' is not a rate"), ("1gbit:soon", "the delay 'soon' is not a time"),
])
def test_a_bad_link_is_one_line_naming_the_flag(text, words):
  with pytest.raises(LinkError, match=f"^--link: {re.escape(words)}"):
    Link.parse(text)


@pytest.mark.unit
def test_interface_counters_and_capabilities_are_read_from_proc(tmp_path):
  table = tmp_path / "dev"
  table.write_text(PROC_NET_DEV)
  assert interface_bytes("link0", str(table)) == (31_498_160, 39_246)
  with pytest.raises(KeyError):
    interface_bytes("eth9", str(table))
  status = tmp_path / "status"
  status.write_text("Name:\tpython\nCapEff:\t000001fffeffefff\n")  # all but CAP_NET_ADMIN
  assert _has_capabilities(21, status=str(status))
  assert not _has_capabilities(12, 21, status=str(status))


def own_namespaces(pid: int) -> list[str]:
  return [n for n in namespaces() if n.startswith(f"tfdist-{pid}-")]


@pytest.mark.e2e
@needs_root
def test_without_the_capabilities_it_is_one_line_and_exit_2(tmp_path):
  """Root without CAP_NET_ADMIN (setpriv drops it) is refused before anything starts."""
  result = subprocess.run(
      ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--",
       sys.executable, "-m", "tfdist", "launch", "--link=1gbit", f"--cluster_spec={SPEC}",
       f"--log_dir={tmp_path / 'logs'}", "--", "true"],
      cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=60)
  assert_usage_error(result, "--link: emulated links need root (CAP_NET_ADMIN")


@pytest.mark.cluster
@needs_root
def test_a_delay_without_netem_is_one_line_and_leaves_nothing(tmp_path):
  """Where the kernel has no netem (this project's machines), a delay is refused in one line
  once the network is being made, and what was made is removed; elsewhere the job runs."""
  launcher = start_launch(SPEC, tmp_path / "logs", [sys.executable, "-c", "pass"],
                          launch_args=("--link=1gbit:0.2ms",))
  output, _ = launcher.communicate(timeout=120)
  if launcher.returncode == 0:
    assert "emulated link: 1gbit with 0.2ms delay" in output
  else:
    assert_usage_error(subprocess.CompletedProcess([], launcher.returncode, "", output),
                       "--link: a delay (0.2ms) needs the netem qdisc")
  assert own_namespaces(launcher.pid) == []


def link_job(tmp_path, name: str, *flags: str):
  model_dir = tmp_path / name
  result = run_tfdist("launch", "--link=1gbit", f"--cluster_spec={SPEC}",
                      f"--log_dir={tmp_path / (name + '-logs')}", "--", "tfdist", "train",
                      f"--model_dir={model_dir}", "--epochs=3", "--steps_per_epoch=12",
                      "--params_override=train.export=false", *THREAD_FLAGS, *flags, timeout=400)
  assert result.returncode == 0, result.stdout[-4000:]
  assert "[launch] emulated link: 1gbit, each task in its own network namespace" in result.stdout
  pid = int(re.search(r"\(tfdist-(\d+)-hub joins them\)", result.stdout).group(1))
  assert own_namespaces(pid) == []  # removed at the job's end, their veths and qdiscs with them
  return read_metrics(model_dir)["communication"]


@pytest.mark.cluster
@needs_root
def test_measured_wire_bytes_agree_with_the_computed_and_bfloat16_halves_them(tmp_path):
  """MWMS, 2 workers on a 1 Gbit/s link: the bytes worker 0 sent per step (its interface's
  counters, epochs 2-3) within 15% of the ring all-reduce's computed bytes, for the cnn and
  a 26x larger dense model; gradients in bfloat16 halve them (within 10%)."""
  figures = {
      "cnn": link_job(tmp_path, "cnn"),
      "cnn-bfloat16": link_job(tmp_path, "cnn-bf16", "--allreduce_dtype=bfloat16"),
      "wide": link_job(tmp_path, "wide", "--model=tests.cluster_scripts.wide_dense:model"),
  }
  for name, communication in figures.items():
    print(f"{name}: computed {communication['sent_bytes_per_step']:,} B/step, measured "
          f"{communication['wire_bytes_per_step']:,} sent / "
          f"{communication['wire_received_bytes_per_step']:,} received")
    assert communication["link"] == "1gbit" and communication["over"] == "network"
    computed, measured = communication["sent_bytes_per_step"], communication["wire_bytes_per_step"]
    assert abs(measured - computed) <= 0.15 * computed, (name, communication)
  assert figures["wide"]["dense_gradient_bytes"] == 4 * 5_824_522
  ratio = figures["cnn-bfloat16"]["wire_bytes_per_step"] / figures["cnn"]["wire_bytes_per_step"]
  assert 0.45 <= ratio <= 0.55, ratio


@pytest.mark.cluster
@needs_root
def test_a_sigkilled_launchers_network_is_removed_by_the_next_start(tmp_path):
  """SIGKILL cannot be caught: the launcher's namespaces outlive it (its tasks do not: the
  kernel kills them); `tfdist launch --remove_links`, as every --link start does, removes
  them, and no veth or qdisc is left on this machine's own network."""
  links_before = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
  launcher = start_launch(SPEC, tmp_path / "logs", [
      "tfdist", "train", f"--model_dir={tmp_path / 'run'}", "--epochs=50", *THREAD_FLAGS],
      launch_args=("--link=100mbit",))
  try:
    deadline = time.monotonic() + 60
    while len(own_namespaces(launcher.pid)) < 3 and time.monotonic() < deadline:
      assert launcher.poll() is None, launcher.stdout.read()[-3000:]
      time.sleep(0.2)
    assert len(own_namespaces(launcher.pid)) == 3  # hub + 2 tasks
    time.sleep(3)  # the tasks are starting in their namespaces
  finally:
    launcher.send_signal(signal.SIGKILL)
    launcher.wait(timeout=30)
  cleaned = run_tfdist("launch", "--remove_links", timeout=60)
  assert cleaned.returncode == 0, cleaned.stderr
  assert own_namespaces(launcher.pid) == []
  assert re.match(r"removed \d+ network namespace", cleaned.stdout)
  links_after = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
  assert links_after.count("veth") <= links_before.count("veth")
  assert "tbf" not in subprocess.run(["tc", "qdisc", "show"], capture_output=True,
                                     text=True).stdout
