"""What the machines are: cluster specs, TF_CONFIG, spec files. Imports no other layer of tfdist."""

from tfdist.cluster.files import load as load_spec_file
from tfdist.cluster.options import ClusterOptions
from tfdist.cluster.exit_codes import (EXIT_FAILURE, EXIT_OK, EXIT_PREEMPTED, EXIT_USER_ERROR,
                                       GRPC_START_FAILURE)
from tfdist.cluster.spec import (AUTO_PORT, CHIEF, EVALUATOR, PS, WORKER, ClusterSpec,
                                 ClusterSpecError, TaskId)
from tfdist.cluster.tf_config import TaskConfig
from tfdist.cluster import tf_config

__all__ = [
    "AUTO_PORT", "CHIEF", "ClusterOptions", "EVALUATOR", "EXIT_FAILURE", "EXIT_OK",
    "EXIT_PREEMPTED", "EXIT_USER_ERROR", "GRPC_START_FAILURE", "PS", "WORKER", "ClusterSpec",
    "ClusterSpecError", "TaskId", "TaskConfig", "load_spec_file", "tf_config",
]
