"""Starting a local cluster: one process per task, prefixed logs, exit codes, restarts.

Uses only `tfdist.cluster`; never TensorFlow.
"""

from tfdist.launch.launcher import Launcher, LaunchOptions, resolve_ports
from tfdist.launch.process import free_port

__all__ = ["LaunchOptions", "Launcher", "free_port", "resolve_ports"]
