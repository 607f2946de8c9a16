"""The auto rules and explicit strategy names (pure decision logic)."""

import pytest

from tfdist.cluster import ClusterSpec, TaskConfig, TaskId
from tfdist.strategy import (ROLE_EVALUATOR, ROLE_SERVER, ROLE_TRAINER, StrategyError,
                             StrategyOptions, choose)


def config(jobs, task="worker:0", evaluators=0):
  return TaskConfig(ClusterSpec.from_dict(jobs, evaluators), TaskId.parse(task))


WORKERS = {"worker": ["h:1", "h:2"]}
PS_CLUSTER = {"chief": ["h:9"], "worker": ["h:1", "h:2"], "ps": ["h:3"]}


def test_no_cluster_is_mirrored_over_local_devices():
  choice = choose(StrategyOptions(), None, num_gpus=0)
  assert choice.class_name == "MirroredStrategy" and choice.role == ROLE_TRAINER
  assert "no TF_CONFIG" in choice.reason and "the CPU" in choice.reason
  assert "2 logical CPUs" in choose(StrategyOptions(cpu_replicas=2), None, 0).reason
  assert "4 GPUs" in choose(StrategyOptions(), None, 4).reason


def test_one_task_cluster_is_mirrored():
  choice = choose(StrategyOptions(), config({"worker": ["h:1"]}), 0)
  assert choice.class_name == "MirroredStrategy"
  assert "single training task" in choice.reason


def test_workers_only_is_multi_worker_mirrored():
  choice = choose(StrategyOptions(), config(WORKERS, "worker:1"), 0)
  assert choice.class_name == "MultiWorkerMirroredStrategy"
  assert choice.log_line() == ("Strategy: MultiWorkerMirroredStrategy (TF_CONFIG has 2 workers -> "
                               "no ps -> MultiWorkerMirroredStrategy; this is task worker:1)")
  assert choose(StrategyOptions(), config({"chief": ["h:9"], "worker": ["h:1"]}, "chief:0"),
                0).class_name == "MultiWorkerMirroredStrategy"


def test_any_ps_is_parameter_server_with_roles():
  assert choose(StrategyOptions(), config(PS_CLUSTER, "chief:0"), 0).role == ROLE_TRAINER
  for task in ("worker:1", "ps:0"):
    choice = choose(StrategyOptions(), config(PS_CLUSTER, task), 0)
    assert choice.class_name == "ParameterServerStrategy" and choice.role == ROLE_SERVER
    assert "ps tasks present" in choice.reason
  evaluator = choose(StrategyOptions(), config(PS_CLUSTER, "evaluator:0", evaluators=1), 0)
  assert evaluator.role == ROLE_EVALUATOR


@pytest.mark.parametrize("name, jobs, message", [
    ("mirrored", WORKERS, "trains on one machine, but TF_CONFIG describes 2 workers"),
    ("one_device", WORKERS, "trains on one machine"),
    ("multi_worker_mirrored", PS_CLUSTER, "cannot use the cluster's ps tasks"),
    ("parameter_server", WORKERS, "needs a cluster with `ps` and `worker` tasks"),
    ("parameter_server", None, "needs a cluster with `ps` and `worker` tasks"),
    ("parameter_server", {"worker": ["h:1"], "ps": ["h:2"]}, "cluster.chief: parameter-server"),
    ("auto", {"worker": ["h:1"], "ps": ["h:2"]}, "cluster.chief: parameter-server"),
])
def test_explicit_names_that_cannot_run_here(name, jobs, message):
  with pytest.raises(StrategyError, match=message):
    choose(StrategyOptions(name=name), config(jobs) if jobs else None, 0)


def test_explicit_names_that_can():
  assert choose(StrategyOptions(name="one_device"), None, 0).class_name == "OneDeviceStrategy"
  assert choose(StrategyOptions(name="multi_worker_mirrored"), None, 0).class_name == \
      "MultiWorkerMirroredStrategy"
  assert choose(StrategyOptions(name="parameter_server"), config(PS_CLUSTER, "chief:0"),
                0).reason.startswith("--strategy=parameter_server")


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "tpu"}, r"`strategy.name` \('tpu'\) must be one of auto, one_device"),
    ({"cross_device_ops": "magic"}, "strategy.cross_device_ops"),
    ({"communication": "mpi"}, "strategy.communication"),
    ({"cpu_replicas": -1}, "strategy.cpu_replicas"),
    ({"startup_timeout_s": 0}, "strategy.startup_timeout_s"),
])
def test_invalid_options(kwargs, message):
  with pytest.raises(StrategyError, match=message):
    StrategyOptions(**kwargs)


@pytest.mark.parametrize("jobs", [{"worker": ["h:1"]}, {"chief": ["h:9"]}, WORKERS,
                                  {"chief": ["h:9"], "worker": ["h:1"]}, PS_CLUSTER])
@pytest.mark.parametrize("name", ["auto", "one_device", "mirrored", "multi_worker_mirrored",
                                  "parameter_server"])
def test_the_evaluator_never_trains(jobs, name):
  """Under every strategy name a cluster accepts, its evaluator task is an evaluator."""
  options = StrategyOptions(name=name)
  trainer_task = "chief:0" if "chief" in jobs else "worker:0"
  try:
    trainer = choose(options, config(jobs, trainer_task, evaluators=1), 0)
  except StrategyError:
    return  # This name cannot train on this cluster at all.
  assert trainer.role == ROLE_TRAINER
  evaluator = choose(options, config(jobs, "evaluator:0", evaluators=1), 0)
  assert evaluator.role == ROLE_EVALUATOR, evaluator
  assert evaluator.name == trainer.name  # it evaluates what the trainers train
  assert evaluator.log_line().startswith("Sidecar evaluator for ")
