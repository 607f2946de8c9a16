"""When a parameter-server job's servers may end: only once the chief's process is gone."""

import socket
import threading
import time

from tfdist.cluster import ClusterSpec, TaskConfig, TaskId
from tfdist.strategy.parameter_server import wait_for_chief_exit


def config_with_chief_at(port: int, task: TaskId = TaskId("ps", 0)) -> TaskConfig:
  spec = ClusterSpec.from_dict({"chief": [f"127.0.0.1:{port}"], "worker": ["127.0.0.1:1"],
                                "ps": ["127.0.0.1:2"]})
  return TaskConfig(spec, task)


def test_a_server_waits_while_the_chief_accepts_connections():
  with socket.socket() as chief:
    chief.bind(("127.0.0.1", 0))
    chief.listen()
    config = config_with_chief_at(chief.getsockname()[1])
    assert wait_for_chief_exit(config, timeout_s=0.5) is False  # still up: waited it out

    closer = threading.Timer(0.3, chief.close)
    closer.start()
    started = time.monotonic()
    assert wait_for_chief_exit(config, timeout_s=10) is True
    assert time.monotonic() - started >= 0.25  # it did wait for the close
    closer.join()


def test_a_server_whose_chief_is_gone_ends_at_once():
  with socket.socket() as s:  # a port nobody listens on
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  assert wait_for_chief_exit(config_with_chief_at(port), timeout_s=10) is True
  assert wait_for_chief_exit(config_with_chief_at(port, TaskId("chief", 0)), timeout_s=0) is True
