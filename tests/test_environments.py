"""Where a process runs: the environments in their order, their run ids and device settings."""

import json

import pytest

from tfdist.cluster import ClusterOptions, ClusterSpecError, TaskId, environments

TF_CONFIG = json.dumps({"cluster": {"worker": ["h1:2222", "h2:2222"]},
                        "task": {"type": "worker", "index": 1}, "rpc_layer": "grpc"})
POD = {"TFDIST_K8S_CLUSTER": json.dumps({"cluster": {"worker": ["w-0.s:2222", "w-1.s:2222"]}}),
       "TFDIST_K8S_TASK_TYPE": "worker", "JOB_COMPLETION_INDEX": "0"}
STEP = {"SLURM_PROCID": "1", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_STEP_TASKS_PER_NODE": "1(x2)",
        "SLURM_STEP_NUM_TASKS": "2", "SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0"}


@pytest.mark.parametrize("environ, kind", [
    ({}, environments.LocalEnvironment),
    ({"TF_CONFIG": TF_CONFIG}, environments.TfConfigEnvironment),
    ({**POD}, environments.KubernetesPodEnvironment),
    ({**STEP}, environments.SlurmStepEnvironment),
    ({"TF_CONFIG": TF_CONFIG, **POD, **STEP}, environments.TfConfigEnvironment),  # first wins
    ({**POD, **STEP}, environments.KubernetesPodEnvironment),
    ({"TF_CONFIG": "  "}, environments.LocalEnvironment),
])
def test_environments_are_tried_in_order(environ, kind):
  assert type(environments.find(environ)) is kind


def test_tf_config_is_kept_as_given_with_a_run_id_from_its_cluster():
  environ = {"TF_CONFIG": TF_CONFIG}
  config = environments.detect(ClusterOptions(), environ)
  assert config.task == TaskId("worker", 1) and environ["TF_CONFIG"] == TF_CONFIG
  other_task = json.loads(TF_CONFIG)
  other_task["task"]["index"] = 0
  same_job = environments.detect(ClusterOptions(), {"TF_CONFIG": json.dumps(other_task)})
  assert config.run_id == same_job.run_id and config.run_id.startswith("cluster-")
  named = environments.detect(ClusterOptions(), {"TF_CONFIG": TF_CONFIG, "TFDIST_RUN_ID": "r7"})
  assert named.run_id == "r7"


def test_a_pod_and_a_slurm_step_write_tf_config_once_detected():
  environ = dict(POD)
  config = environments.detect(ClusterOptions(), environ)
  assert json.loads(environ["TF_CONFIG"])["task"] == {"type": "worker", "index": 0}
  assert config.origin.startswith("Kubernetes pod")
  environ = dict(STEP, CUDA_VISIBLE_DEVICES="0,1,2,3", SLURM_STEP_TASKS_PER_NODE="2",
                 SLURM_STEP_NODELIST="n1")
  config = environments.detect(ClusterOptions(), environ)
  assert config.run_id == "slurm-77.0" and config.task == TaskId("worker", 1)
  assert environ["CUDA_VISIBLE_DEVICES"] == "2,3"  # its half of the node's GPUs


def test_one_machine_is_no_cluster_and_bad_input_names_the_variable():
  environ = {}
  assert environments.detect(ClusterOptions(), environ) is None and environ == {}
  with pytest.raises(ClusterSpecError, match="JOB_COMPLETION_INDEX"):
    environments.detect(ClusterOptions(), dict(POD, JOB_COMPLETION_INDEX="x"))
