"""ClusterSpec, TF_CONFIG and spec files: every validation error names its field."""

import json
import os

import pytest

from tfdist.cluster import ClusterSpec, ClusterSpecError, TaskId, load_spec_file, tf_config
from tests.helpers import REPO

TWO_WORKERS = {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}


@pytest.mark.parametrize("cluster, message", [
    ({}, "cluster: the cluster is empty"),
    ({"trainer": ["127.0.0.1:1"]}, "cluster.trainer: unknown task type 'trainer'"),
    ({"worker": ["localhost"]}, r"cluster.worker\[0\]: 'localhost' is not 'host:port'"),
    ({"worker": ["127.0.0.1:abc"]}, r"cluster.worker\[0\]: port 'abc'"),
    ({"worker": ["127.0.0.1:0"]}, "must be a number from 1 to 65535"),
    ({"worker": ["127.0.0.1:70000"]}, "must be a number from 1 to 65535"),
    ({"worker": ["a b:1"]}, "is not 'host:port'"),
    ({"worker": ["127.0.0.1:2222", "127.0.0.1:2222"]},
     r"cluster.worker\[1\]: address 127.0.0.1:2222 is also used by cluster.worker\[0\]"),
    ({"chief": ["h:1", "h:2"], "worker": ["h:3"]}, "cluster.chief: 2 chiefs listed"),
    ({"ps": ["h:1"]}, "cluster.worker: a cluster with `ps` tasks needs at least one worker"),
    ({"worker": ["h:1"], "evaluator": ["h:2"]}, "cluster.evaluator: the evaluator is not a training task"),
    ({"worker": []}, "cluster.worker: expected a non-empty list"),
    (["h:1"], "cluster: expected a mapping"),
    ({"worker": [12]}, r"cluster.worker\[0\]: expected a 'host:port' string"),
])
def test_invalid_cluster_names_the_field(cluster, message):
  with pytest.raises(ClusterSpecError, match=message):
    ClusterSpec.from_dict(cluster)


def test_spec_questions():
  spec = ClusterSpec.from_dict({"chief": ["h:1"], "worker": ["h:2", "h:3"], "ps": ["h:4"]}, 1)
  assert spec.num_workers == 3 and spec.num_ps == 1
  assert [str(t) for t in spec.tasks()] == ["chief:0", "worker:0", "worker:1", "ps:0", "evaluator:0"]
  assert spec.is_chief(TaskId("chief", 0)) and not spec.is_chief(TaskId("worker", 0))
  assert ClusterSpec.from_dict(TWO_WORKERS).is_chief(TaskId("worker", 0))
  assert spec.address(TaskId("worker", 1)) == "h:3"
  assert ClusterSpec.from_dict({"worker": ["[::1]:5"]}).num_workers == 1


def test_auto_ports_are_resolved_by_with_ports():
  spec = ClusterSpec.from_dict({"worker": ["127.0.0.1:auto", "127.0.0.1:auto"]})
  assert spec.has_auto_ports
  resolved = spec.with_ports({TaskId("worker", 0): 5000, TaskId("worker", 1): 5001})
  assert resolved.as_dict() == {"worker": ["127.0.0.1:5000", "127.0.0.1:5001"]}
  assert not resolved.has_auto_ports


@pytest.mark.parametrize("text, message", [
    ("worker", "must be TYPE:INDEX"), ("worker:x", "must be TYPE:INDEX"),
    ("boss:0", "must be TYPE:INDEX"), ("worker:-1", "must be TYPE:INDEX"),
])
def test_task_id_parse_errors(text, message):
  with pytest.raises(ClusterSpecError, match=message):
    TaskId.parse(text)


def test_tf_config_round_trip():
  spec = ClusterSpec.from_dict({"chief": ["h:1"], "worker": ["h:2", "h:3"], "ps": ["h:4"]})
  for task in spec.tasks():
    parsed = tf_config.parse(tf_config.emit(spec, task))
    assert parsed.cluster == spec and parsed.task == task
  assert tf_config.parse(tf_config.emit(spec, TaskId("chief", 0))).is_chief


@pytest.mark.parametrize("text, message", [
    ("{}", "TF_CONFIG.cluster: missing"),
    ("not json", "TF_CONFIG: not valid JSON"),
    ("[1]", "TF_CONFIG: expected a JSON object"),
    ('{"cluster": {"worker": ["h:1"]}}', "TF_CONFIG.task: missing"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"index": 0}}', "TF_CONFIG.task.type: missing"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": "0"}}',
     "TF_CONFIG.task.index: expected a non-negative integer"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 1}}',
     r"TF_CONFIG.task.index: 1 is out of range for 'worker' \(1 task: valid 0..0\)"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "ps", "index": 0}}',
     "TF_CONFIG.task.type: the cluster has no 'ps' task"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "boss", "index": 0}}',
     "TF_CONFIG.task.type: unknown task type 'boss'"),
    ('{"cluster": {"worker": ["h:auto"]}, "task": {"type": "worker", "index": 0}}',
     "'auto' ports are only resolved by `tfdist launch`"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker"}, "clutser": 1}',
     "TF_CONFIG.clutser: unknown key"),
])
def test_bad_tf_config_names_the_field(text, message):
  with pytest.raises(ClusterSpecError, match=message):
    tf_config.parse(text)


def test_evaluator_tf_config_is_outside_the_cluster():
  config = tf_config.parse(json.dumps(
      {"cluster": TWO_WORKERS, "task": {"type": "evaluator", "index": 0}}))
  assert config.task == TaskId("evaluator", 0) and config.cluster.num_workers == 2
  assert not config.is_chief


def test_from_environment_unset_or_empty_is_none():
  assert tf_config.from_environment({}) is None
  assert tf_config.from_environment({"TF_CONFIG": "  "}) is None
  with pytest.raises(ClusterSpecError):
    tf_config.from_environment({"TF_CONFIG": "{}"})


def test_emit_refuses_auto_ports_and_missing_tasks():
  with pytest.raises(ClusterSpecError, match="'auto' ports"):
    tf_config.emit(ClusterSpec.from_dict({"worker": ["h:auto"]}), TaskId("worker", 0))
  with pytest.raises(ClusterSpecError, match=r"--task.index: 2 is out of range"):
    tf_config.emit(ClusterSpec.from_dict(TWO_WORKERS), TaskId("worker", 2))


def test_shipped_cluster_specs_are_valid():
  folder = os.path.join(REPO, "configs", "clusters")
  names = sorted(os.listdir(folder))
  assert {"local-2workers.yaml", "local-chief-2workers.yaml", "local-ps.yaml",
          "local-ps-eval.yaml"} <= set(names)
  for name in names:
    spec = load_spec_file(os.path.join(folder, name))
    assert all(a.startswith("127.0.0.1:") for addrs in spec.jobs.values() for a in addrs)
  assert load_spec_file(os.path.join(folder, "local-ps-eval.yaml")).evaluators == 1


@pytest.mark.parametrize("content, message", [
    ("cluster: [", "not valid YAML/JSON at line"),
    ("- a", "expected a mapping with a `cluster` key"),
    ("workers: {}", "workers: unknown key"),
    ("evaluator: 1", "cluster: missing"),
    ("cluster: {worker: [h:1]}\nevaluator: 2", "evaluator: expected 0 or 1"),
    ('{"cluster": {"worker": ["h:1", "h:1"]}}', "is also used by"),
])
def test_bad_spec_files(tmp_path, content, message):
  path = tmp_path / "spec.yaml"
  path.write_text(content)
  with pytest.raises(ClusterSpecError, match=message):
    load_spec_file(str(path))


def test_missing_spec_file():
  with pytest.raises(ClusterSpecError, match="--cluster_spec: no such file"):
    load_spec_file("/nonexistent/spec.yaml")


# Outside input of every wrong shape: one ClusterSpecError naming the field, never another error.
@pytest.mark.parametrize("text, message", [
    ('{"cluster": {"worker": "127.0.0.1:29101"}, "task": {"type": "worker", "index": 0}}',
     r"TF_CONFIG.cluster.worker: expected a non-empty list of 'host:port' addresses, got '127"),
    ('{"cluster": {"worker": {"0": "h:1"}}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG.cluster.worker: expected a non-empty list"),
    ('{"cluster": {"worker": [["h:1"]]}, "task": {"type": "worker", "index": 0}}',
     r"TF_CONFIG.cluster.worker\[0\]: expected a 'host:port' string"),
    ('{"cluster": "worker", "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG.cluster: expected a mapping"),
    ('{"cluster": {"worker": ["h:1"]}, "task": [0]}', "TF_CONFIG.task: missing or not an object"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": 1, "index": 0}}',
     "TF_CONFIG.task.type: missing or not a string"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": "0"}}',
     "TF_CONFIG.task.index: expected a non-negative integer"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": -1}}',
     "TF_CONFIG.task.index: -1 is out of range"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 0}, "rpc_layer": 1}',
     "TF_CONFIG.rpc_layer: expected a string"),
    ('{"cluster": {"worker": ["h:\u00b2"]}, "task": {"type": "worker", "index": 0}}',
     r"TF_CONFIG.cluster.worker\[0\]: port"),
    ("[" * 100_000 + "]" * 100_000, "TF_CONFIG: nested too deeply"),
    ('"just a string"', "TF_CONFIG: expected a JSON object"),
    ("\udcff\udcfe", "TF_CONFIG: not valid JSON"),  # non-UTF-8 bytes, as Python decodes them
])
def test_malformed_tf_config_is_one_error(text, message):
  with pytest.raises(ClusterSpecError, match=message):
    tf_config.parse(text)


@pytest.mark.parametrize("text", ["worker:\u00b2", "worker:\uff11", "worker:1:2", "worker:",
                                  ":1", "Worker:0", "worker:99999999"])
def test_task_names_of_every_shape(text):
  with pytest.raises(ClusterSpecError, match=r"`--task` .* must be TYPE:INDEX"):
    TaskId.parse(text)


@pytest.mark.parametrize("content, message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "is not UTF-8 text"),
    (b"", "expected a mapping with a `cluster` key"),
    (b"cluster: " + b"[" * 5000 + b"]" * 5000, "nested too deeply|not valid YAML"),
    (b"cluster: {worker: [h:1]}\n" + b"# padding\n" * 200_000, "bytes; expected a YAML/JSON file"),
    (b"cluster: {worker: h:1, ps: 3}", "cluster.ps: expected a non-empty list"),
    (b"cluster: {worker: [h:1]}\nevaluator: [1]", "evaluator: expected 0 or 1"),
    (b"cluster: {worker: [h:1]}\n? [a, b]\n: 1", "not valid YAML/JSON"),
    (b"cluster: {1: [h:1]}", "cluster.1: unknown task type 1"),
])
def test_malformed_spec_files_are_one_error(tmp_path, content, message):
  path = tmp_path / "spec.yaml"
  path.write_bytes(content)
  with pytest.raises(ClusterSpecError, match=message):
    load_spec_file(str(path))


def test_spec_file_paths_expand_the_home_dir(tmp_path, monkeypatch):
  monkeypatch.setenv("HOME", str(tmp_path))
  (tmp_path / "spec.yaml").write_text("cluster: {worker: [h:1]}")
  assert load_spec_file("~/spec.yaml").num_workers == 1
  with pytest.raises(ClusterSpecError, match="no such file"):
    load_spec_file(str(tmp_path))  # a directory
