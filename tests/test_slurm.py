"""A SLURM step as a cluster: parsing SLURM's variables (pure), and real batch jobs.

The real runs need Debian's slurmctld/slurmd/munge (`.ci/run` installs them); they start a
private one-node SLURM for the session (see tests/slurm_cluster.py).
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from tfdist.cluster import ClusterSpecError, TaskId
from tfdist.cluster import slurm_step as slurm
from tfdist.launch import free_port
from tests.cluster_scripts import read_counts
from tests.helpers import REPO, THREAD_FLAGS, cli_env
from tests.helpers import slurm_cluster as sc


@pytest.mark.parametrize("text, hosts", [
    ("n1", ["n1"]),
    ("n[1-3,7],gpu[01-02]", ["n1", "n2", "n3", "n7", "gpu01", "gpu02"]),
    ("a-b[01-10]", [f"a-b{i:02d}" for i in range(1, 11)]),
    ("n[8-11]", ["n8", "n9", "n10", "n11"]),  # SLURM's order: n9 before n10
    ("host-a,host-b", ["host-a", "host-b"]),
    ("n[1-2]-ib", ["n1-ib", "n2-ib"]),
    ("rack[1-2]n", ["rack1n", "rack2n"]),
])
def test_node_lists_expand_in_slurm_order(text, hosts):
  assert slurm.expand_nodelist(text) == hosts


@pytest.mark.parametrize("text, message", [
    ("n[1-3", "unbalanced brackets"),
    ("n]1[", "unbalanced brackets"),
    ("n[1-3]]", "unbalanced brackets"),
    ("n[[1-3]]", "unbalanced brackets"),
    ("n1,,n2", "empty host"),
    ("n[a-c]", "'a-c' .* is not N or N-M"),
    ("n[3-1]", "range '3-1' .* is empty"),
    ("n[1-2][3-4]", "is not a host or host\\[ranges\\]"),
    ("n[]", "unbalanced brackets|is not a host"),
])
def test_malformed_node_lists_name_the_variable(text, message):
  with pytest.raises(ClusterSpecError, match=f"SLURM_STEP_NODELIST: .*{message}"):
    slurm.expand_nodelist(text)


@pytest.mark.parametrize("text, counts", [
    ("1", [1]), ("2(x3),1", [2, 2, 2, 1]), ("4,2(x2)", [4, 2, 2]),
])
def test_tasks_per_node_expand(text, counts):
  assert slurm.expand_tasks_per_node(text) == counts


@pytest.mark.parametrize("text", ["", "x", "2(x)", "2(x0)", "0", "2(3)", "-1", "2,,1"])
def test_malformed_tasks_per_node(text):
  with pytest.raises(ClusterSpecError, match="SLURM_STEP_TASKS_PER_NODE: "):
    slurm.expand_tasks_per_node(text)


def step(procid, nodes="n[9-10]", per_node="2(x2)", num_tasks=4, **extra):
  return {"SLURM_PROCID": str(procid), "SLURM_STEP_NODELIST": nodes,
          "SLURM_STEP_TASKS_PER_NODE": per_node, "SLURM_STEP_NUM_TASKS": str(num_tasks), **extra}


def test_workers_by_default_with_ports_per_node():
  config = slurm.task_config(step(3), base_port=3000)
  assert config.cluster.as_dict() == {"worker": ["n9:3000", "n9:3001", "n10:3000", "n10:3001"]}
  assert config.task == TaskId("worker", 3)
  assert config.origin == "SLURM step: 4 tasks on 2 nodes"


def test_layout_assigns_ranks_chief_workers_ps_evaluator():
  env = step(4, nodes="n[1-3]", per_node="2(x2),1", num_tasks=5)
  config = slurm.task_config(env, "ps:1,worker:2,chief:1,evaluator:1", base_port=3000)
  assert config.cluster.as_dict() == {"chief": ["n1:3000"], "worker": ["n1:3001", "n2:3000"],
                                      "ps": ["n2:3001"]}
  assert config.cluster.evaluators == 1 and config.task == TaskId("evaluator", 0)
  assert slurm.task_config(step(0, nodes="n[1-3]", per_node="2(x2),1", num_tasks=5),
                           "chief:1,worker:2,ps:1,evaluator:1").is_chief


@pytest.mark.parametrize("env, layout, message", [
    (step(0), "worker:3", "--slurm_tasks: 'worker:3' names 3 tasks, but the SLURM step has 4"),
    (step(0), "boss:4", "--slurm_tasks: 'boss:4' must be TYPE:COUNT"),
    (step(0), "worker:2,worker:2", "each type once"),
    (step(0), "chief:2,worker:2", "at most one chief"),
    (step(0), "ps:4", "--slurm_tasks.worker: a cluster with `ps` tasks needs at least one worker"),
    (step(4), "", "SLURM_PROCID: 4 is not a rank of the step's 4 tasks"),
    (step(0, num_tasks=5), "",
     "SLURM_STEP_NUM_TASKS: 5 tasks, but SLURM_STEP_TASKS_PER_NODE adds up to 4"),
    (step(0, per_node="2"), "", "SLURM_STEP_TASKS_PER_NODE: '2' gives 1 node"),
    (step("x"), "", "SLURM_PROCID: 'x' is not a non-negative integer"),
    ({"SLURM_PROCID": "0"}, "", "SLURM_STEP_NODELIST: not set; not inside a SLURM job step"),
    (step(1, SLURMD_NODENAME="n10", SLURM_LOCALID="0"), "",
     "tfdist needs ranks to fill nodes in order"),
])
def test_step_errors_are_one_line_naming_the_variable(env, layout, message):
  with pytest.raises(ClusterSpecError) as raised:
    slurm.task_config(env, layout)
  assert message in str(raised.value) and "\n" not in str(raised.value)


def test_gpus_are_split_among_the_tasks_on_a_node():
  env = step(1, nodes="n1", per_node="2", num_tasks=2)
  assert slurm.gpus_for_task("0,1,2,3", env) == "2,3"
  assert slurm.gpus_for_task("0,1,2,3", step(0, nodes="n1", per_node="2", num_tasks=2)) == "0,1"
  assert slurm.gpus_for_task("0,1,2,3", dict(env, SLURM_GPUS_PER_TASK="2")) is None  # bound
  assert slurm.gpus_for_task("", env) is None  # a CPU node: nothing changes
  assert slurm.gpus_for_task("0,1,2,3", {}) is None  # not in a step
  assert slurm.gpus_for_task("0", env) is None  # fewer GPUs than tasks: left to the user


# --- Real SLURM: the sbatch examples (`srun tfdist train`) on a private one-node cluster. ---

@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
  missing = sc.missing_programs()
  if missing:
    # CI installs them (.ci/run sets TFDIST_REQUIRE_SYSTEM_TESTS=1): there, a missing SLURM fails.
    if os.environ.get("TFDIST_REQUIRE_SYSTEM_TESTS"):
      pytest.fail(f"SLURM programs missing: {', '.join(missing)}")
    pytest.skip(f"SLURM programs missing: {', '.join(missing)} (apt-get install slurmd "
                "slurmctld slurm-client munge)")
  cluster = sc.SlurmCluster(str(tmp_path_factory.mktemp("slurm")))
  cluster.start()
  yield cluster
  cluster.stop()


def job_env(model_dir, **extra: str) -> dict:
  """A batch job's environment: this Python's tfdist first on PATH, the model dir for the
  example (MODEL_DIR), no SLURM variables of an enclosing job; then `extra`."""
  env = {k: v for k, v in cli_env().items() if not k.startswith("SLURM_")}
  env.update(MODEL_DIR=str(model_dir), PATH=f"{os.path.dirname(sys.executable)}:{env['PATH']}")
  env.update(extra)
  return env


@pytest.mark.cluster
@pytest.mark.xdist_group("slurm")  # one private SLURM per test process: all its tests in one
@pytest.mark.parametrize("script, tasks, placement, line, strategy, bar", [
    ("slurm_multi_worker.sbatch", 2, ["--ntasks-per-node=2"],
     "SLURM step: 2 tasks on 1 node -> 2 workers -> no ps -> MultiWorkerMirroredStrategy; "
     "this is task worker:", "MultiWorkerMirroredStrategy", 0.93),
    ("slurm_parameter_server.sbatch", 4, [],
     "SLURM step: 4 tasks on 1 node -> 1 chief, 2 workers, 1 ps -> ps tasks present -> "
     "ParameterServerStrategy; this is task chief:0)", "ParameterServerStrategy", 0.9),
])
def test_the_sbatch_examples_run(slurm_cluster, tmp_path, data_dir, script, tasks, placement,
                                 line, strategy, bar):
  """The examples as a user submits them (on one node here: its tasks share it): inside the
  step `srun tfdist train` builds each task's TF_CONFIG from SLURM's variables."""
  model_dir = tmp_path / "run"
  state, exit_code = slurm_cluster.sbatch(
      ["--nodes=1", f"--ntasks={tasks}", *placement, "--overcommit",
       f"--output={tmp_path / 'job.out'}", "--chdir", REPO,
       os.path.join(REPO, "examples", script), f"--data_dir={data_dir}", "--epochs=4",
       *THREAD_FLAGS], **job_env(model_dir))
  output = (tmp_path / "job.out").read_text() if (tmp_path / "job.out").exists() else ""
  assert (state, exit_code) == ("COMPLETED", "0:0"), (state, exit_code, output[-4000:])
  metrics = json.loads((model_dir / "metrics.json").read_text())
  assert metrics["strategy"] == strategy and metrics["epochs_completed"] == 4
  assert metrics["num_workers"] == 2 and metrics["eval_accuracy"] >= bar
  assert f"Strategy: {strategy} ({line}" in output
  if strategy == "ParameterServerStrategy":  # servers end by themselves, after the chief's process
    assert output.count("Training finished and the chief has ended") == 3, output[-4000:]
    assert not re.search(r"Failed to remove function|Connection refused|Connection reset",
                         output), output[-4000:]


def _mwms_job(slurm_cluster, tmp_path, data_dir, *train_flags,
              placement=("--ntasks-per-node=2",), **env):
  """Submits the MultiWorkerMirrored sbatch example on 2 tasks of the one node; returns its id
  and its output file (which a requeued run appends to: the example's --open-mode)."""
  out = tmp_path / "job.out"
  job_id = slurm_cluster.submit(
      ["--nodes=1", "--ntasks=2", *placement, "--overcommit", f"--output={out}",
       "--chdir", REPO,
       os.path.join(REPO, "examples", "slurm_multi_worker.sbatch"), f"--data_dir={data_dir}",
       # Ports of its own: another test running beside it may hold the default 28800.
       f"--slurm_base_port={free_port()}", *THREAD_FLAGS, *train_flags],
      **job_env(tmp_path / "run", **env))
  return job_id, out


@pytest.mark.cluster
@pytest.mark.xdist_group("slurm")
def test_a_signalled_job_saves_requeues_itself_and_resumes_with_no_step_lost(
    slurm_cluster, tmp_path, data_dir):
  """SIGTERM to the job's tasks mid-run (what --signal=TERM@120 does before the time limit):
  every task saves and exits 75, the script requeues the job, and the requeued run resumes at
  the saved step and finishes."""
  job_id, out = _mwms_job(slurm_cluster, tmp_path, data_dir, "--epochs=3",
                          "--steps_per_epoch=150")
  deadline = time.monotonic() + 300
  while "Epoch 2/3" not in (out.read_text() if out.exists() else ""):
    assert time.monotonic() < deadline and slurm_cluster.job(job_id).get("JobState") in (
        "PENDING", "CONFIGURING", "RUNNING"), slurm_cluster.job(job_id)
    time.sleep(0.2)
  subprocess.run(["scancel", "--signal=TERM", job_id], env=slurm_cluster.env(), check=True,
                 timeout=30)
  fields = slurm_cluster.wait(job_id, timeout_s=600)
  output = out.read_text()
  assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), output[-4000:]
  assert fields["Restarts"] == "1"
  saved = set(re.findall(r"Preempted: training state saved at epoch (\d+) after step (\d+)",
                         output))
  assert len(saved) == 1, output[-4000:]  # both tasks, the same step
  (epoch, step), = saved
  assert f"requeueing job {job_id} (requeue 1 of at most 10)" in output
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert metrics["resumed_from"] == {"epoch": int(epoch), "step": int(step)}  # 0 steps lost
  assert metrics["epochs_completed"] == 3


@pytest.mark.cluster
@pytest.mark.xdist_group("slurm")
def test_a_user_error_is_never_requeued(slurm_cluster, tmp_path, data_dir):
  job_id, out = _mwms_job(slurm_cluster, tmp_path, data_dir, "--global_batch_size=0")
  fields = slurm_cluster.wait(job_id, timeout_s=300)
  output = out.read_text()
  assert (fields["JobState"], fields["ExitCode"]) == ("FAILED", "2:0"), output[-3000:]
  assert fields["Restarts"] == "0" and "requeueing" not in output
  assert "`data.global_batch_size` (0) must be a positive integer" in output


@pytest.mark.cluster
@pytest.mark.xdist_group("slurm")
def test_requeues_stop_at_max_requeues(slurm_cluster, tmp_path, data_dir):
  """Training that exits 75 at once, every time (a `tfdist` standing in for it): the script
  requeues the job MAX_REQUEUES times, then lets it end with 75."""
  stub = tmp_path / "bin" / "tfdist"
  stub.parent.mkdir()
  stub.write_text("#!/bin/sh\necho 'training saved its state (stand-in)'\nexit 75\n")
  stub.chmod(0o755)
  job_id, out = _mwms_job(slurm_cluster, tmp_path, data_dir, MAX_REQUEUES="2",
                          PATH=f"{stub.parent}:{os.environ['PATH']}")
  fields = slurm_cluster.wait(job_id, timeout_s=600)
  output = out.read_text()
  assert (fields["JobState"], fields["ExitCode"], fields["Restarts"]) == ("FAILED", "75:0", "2")
  assert output.count("training saved its state (stand-in)") == 3 * 2, output  # 3 runs, 2 tasks
  assert "(requeue 2 of at most 2)" in output and "requeue 3" not in output
  assert "the job was requeued 2 times (MAX_REQUEUES); not requeueing" in output


@pytest.mark.cluster
@pytest.mark.xdist_group("slurm")
def test_a_job_requeued_on_fewer_tasks_resumes_with_every_example_read_once(
    slurm_cluster, tmp_path, data_dir):
  """Signalled mid-epoch on 2 tasks, the job saves and requeues itself, and is given 1 task
  while it waits (on one node, what a job submitted with a node range, --nodes=2-4, meets when
  it gets fewer nodes): the example starts 1 task, which resumes with the same global batch
  and reads every id once an epoch."""
  job_id, out = _mwms_job(
      slurm_cluster, tmp_path, data_dir, "--dataset=tests.cluster_scripts.read_counts:ids",
      "--model=tests.cluster_scripts.read_counts:counter", "--global_batch_size=16",
      "--epochs=2", "--backup_every_steps=10", "--save_share=0",
      "--params_override=train.export=false", PYTHONPATH=REPO)  # (`tests.` for srun's tfdist)
  backups, deadline = tmp_path / "run" / "backup" / "chief" / "checkpoint", time.monotonic() + 300
  while not (backups.exists() and "ckpt-3" in backups.read_text()):
    assert time.monotonic() < deadline and slurm_cluster.job(job_id).get("JobState") in (
        "PENDING", "CONFIGURING", "RUNNING"), slurm_cluster.job(job_id)
    time.sleep(0.05)
  subprocess.run(["scancel", "--signal=TERM", job_id], env=slurm_cluster.env(), check=True,
                 timeout=30)
  while (slurm_cluster.job(job_id).get("Restarts"), slurm_cluster.job(job_id).get("JobState")) != (
      "1", "PENDING"):  # requeued, held by SLURM
    assert time.monotonic() < deadline, slurm_cluster.job(job_id)
    time.sleep(0.2)
  subprocess.run(["scontrol", "update", f"jobid={job_id}", "NumTasks=1", "TasksPerNode=1",
                  "StartTime=now+20"],
                 env=slurm_cluster.env(), check=True, timeout=30)
  fields = slurm_cluster.wait(job_id, timeout_s=600)
  output = out.read_text()
  assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), output[-4000:]
  assert output.count("Input: this run has 1 worker(s)") == 1, output[-4000:]  # one task
  assert "Input: this run has 1 worker(s), the run it goes on with had 2" in output
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert metrics["resumed_from"]["epoch"] == 1 and metrics["global_batch_size"] == 16
  assert read_counts.distinct_counts_by_epoch(tmp_path / "run", 2) == {1: {1}, 2: {2}}
