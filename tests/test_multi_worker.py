"""Real MultiWorkerMirroredStrategy clusters on 127.0.0.1, started by `tfdist launch`."""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from tfdist.cluster import load_spec_file
from tests.helpers import REPO, THREAD_FLAGS, cli_env, read_metrics, run_tfdist

pytestmark = pytest.mark.cluster

SPECS = os.path.join(REPO, "configs", "clusters")


def launch_train(spec, model_dir, log_dir, *train_args, launch_args=(), timeout=400):
  return run_tfdist("launch", f"--cluster_spec={os.path.join(SPECS, spec)}",
                    f"--log_dir={log_dir}", *launch_args, "--", "tfdist", "train",
                    f"--model_dir={model_dir}", *THREAD_FLAGS, *train_args, timeout=timeout)


# The 2-worker job several tests below share, run once per loop to its end (~600 steps, the
# accuracy bar), deterministically: a job killed or preempted and resumed must end with its
# weights.
TWO_WORKER_JOB = ("--deterministic", "--epochs=4", "--steps_per_epoch=150")


@pytest.fixture(scope="module")
def two_worker_job(tmp_path_factory, data_dir):
  """run(loop) -> (model dir, launch output, log dir) of TWO_WORKER_JOB's 2-worker job run to
  its end with `loop` (each loop's job once, on first use: tests using it share one xdist
  group, so one process runs them all)."""
  done = {}

  def run(loop: str):
    if loop not in done:
      root = tmp_path_factory.mktemp(f"two-workers-{loop}")
      result = launch_train("local-2workers.yaml", root / "run", root / "logs",
                            f"--data_dir={data_dir}", f"--loop={loop}", *TWO_WORKER_JOB)
      assert result.returncode == 0, result.stdout[-4000:]
      done[loop] = (root / "run", result.stdout, root / "logs")
    return done[loop]

  return run


def uninterrupted_weights(two_worker_job, loop: str) -> str:
  return read_metrics(two_worker_job(loop)[0])["weights_sha256"]


def assert_only_chief_wrote(model_dir):
  names = set(os.listdir(model_dir))
  assert names == {"checkpoints", "export", "metrics.json", "params.yaml", "run.json",
                   "tensorboard"}, names
  for root, dirs, _ in os.walk(model_dir):
    assert not [d for d in dirs if "workertemp" in d], f"worker temp dir left in {root}"


@pytest.mark.xdist_group("two_worker_job")
def test_two_workers_reach_the_bar_and_match_mirrored(tmp_path, data_dir, two_worker_job):
  """Same job, same global batch and seed: MWMS on 2 processes vs 2 replicas in 1 process."""
  mwms_dir, output, log_dir = two_worker_job("fit")
  mwms = read_metrics(mwms_dir)
  assert mwms["strategy"] == "MultiWorkerMirroredStrategy"
  assert mwms["num_workers"] == 2 and mwms["num_replicas"] == 2
  assert mwms["eval_accuracy"] >= 0.95
  assert "[worker:1] " in output and "[launch] job finished: status 0" in output
  assert re.search(r"\[worker:0\] .*Strategy: MultiWorkerMirroredStrategy \(TF_CONFIG has 2 workers",
                   output)
  assert re.search(r"\[worker:1\] .*Input: FILE sharding for pipeline 1 of 2", output)
  # TF's warnings say "auto-sharding", "AUTO sharding policy" or "auto_shard_policy".
  lowered = output.lower()
  assert not any(w in lowered for w in ("auto-shard", "auto sharding", "auto_shard_policy"))
  assert sorted(os.listdir(log_dir)) == ["worker-0.log", "worker-1.log"]
  assert_only_chief_wrote(mwms_dir)

  mirrored_dir = tmp_path / "mirrored"
  result = run_tfdist("train", "--strategy=mirrored", "--cpu_replicas=2", f"--data_dir={data_dir}",
                      f"--model_dir={mirrored_dir}", *TWO_WORKER_JOB, *THREAD_FLAGS)
  assert result.returncode == 0, result.stderr[-3000:]
  mirrored = read_metrics(mirrored_dir)
  assert mirrored["global_batch_size"] == mwms["global_batch_size"]
  assert abs(mirrored["eval_accuracy"] - mwms["eval_accuracy"]) <= 0.01, (mirrored, mwms)


@pytest.mark.xdist_group("two_worker_job")
def test_the_custom_loop_on_two_workers(two_worker_job):
  model_dir, output, _ = two_worker_job("custom")
  metrics = read_metrics(model_dir)
  assert metrics["strategy"] == "MultiWorkerMirroredStrategy" and metrics["loop"] == "custom"
  assert metrics["epochs_completed"] == 4 and metrics["eval_accuracy"] >= 0.95
  assert "Epoch 4/4: 150 steps" in output
  assert_only_chief_wrote(model_dir)


def test_chief_and_two_workers(tmp_path):
  """Also a first use of a data dir: the three tasks prepare mnist5k (one of them, under the
  lock) before their strategy, and TensorFlow's runtime must still be unstarted then."""
  model_dir = tmp_path / "run"
  result = launch_train("local-chief-2workers.yaml", model_dir, tmp_path / "logs",
                        f"--data_dir={tmp_path / 'fresh-tfds'}", "--global_batch_size=96",
                        "--epochs=8",
                        "--allreduce_dtype=bfloat16")
  assert result.returncode == 0, result.stdout[-4000:]
  metrics = read_metrics(model_dir)
  assert metrics["num_workers"] == 3 and metrics["num_replicas"] == 3
  assert metrics["per_replica_batch_size"] == 32
  assert metrics["eval_accuracy"] >= 0.95  # gradients summed in bfloat16 all along
  assert "dense gradients summed over 3 replicas as bfloat16" in result.stdout
  communication = metrics["communication"]  # the cnn's 225,034 float32 gradients, in bfloat16
  assert communication["dense_gradient_bytes"] == 900_136
  assert communication["sent_bytes_per_step"] == 600_091  # 2(3-1)/3 x 450,068
  assert "/step sent per worker (network, computed)" in result.stdout
  assert "[chief:0] tfdist: trained cnn" in result.stdout
  assert "[worker:0] tfdist: trained" not in result.stdout  # only the chief reports
  assert_only_chief_wrote(model_dir)
  # The save intervals, widened from each task's first timed save, are the same on every task,
  # and the checkpoints written follow the agreed one (the first epoch, every k-th, the last).
  intervals = dict(re.findall(r"\[(\w+:\d)\] .*Backups every (\d+) steps", result.stdout))
  assert set(intervals) == {"chief:0", "worker:0", "worker:1"}, result.stdout[-3000:]
  assert len(set(intervals.values())) == 1 and int(intervals["chief:0"]) >= 50
  every = dict(re.findall(r"\[(\w+:\d)\] .*Epoch checkpoints (after every epoch|every \d+)",
                          result.stdout))
  assert set(every) == set(intervals) and len(set(every.values())) == 1, result.stdout[-3000:]
  k = 1 if every["chief:0"] == "after every epoch" else int(every["chief:0"].split()[1])
  written = json.loads((model_dir / "run.json").read_text())["checkpoints"]
  assert written == [f"ckpt-{e:04d}" for e in sorted({*range(1, 9, k), 8})], (k, written)


@pytest.mark.parametrize("seed", ["3", "none"])
@pytest.mark.parametrize("spec, shards, policy", [
    ("local-2workers.yaml", 8, "FILE"),
    ("local-2workers.yaml", 1, "DATA"),
    # 2 files for 3 pipelines: DATA sharding over files that an unseeded shuffle would order
    # differently on each worker.
    ("local-chief-2workers.yaml", 2, "DATA"),
])
def test_every_example_is_seen_exactly_once_per_epoch(tmp_path, spec, shards, policy, seed):
  """With and without a seed, every example once per epoch over all workers."""
  from tests.cluster_scripts import ids_dataset
  data_dir, out_dir = str(tmp_path / "data"), tmp_path / "out"
  out_dir.mkdir()
  ids_dataset.prepare(data_dir, shards)
  result = run_tfdist("launch", f"--cluster_spec={os.path.join(SPECS, spec)}",
                      f"--log_dir={tmp_path / 'logs'}", "--", "python", "-m",
                      "tests.cluster_scripts.iterate_ids", data_dir, str(out_dir), "24", seed,
                      timeout=200)
  assert result.returncode == 0, result.stdout[-4000:]
  per_worker = [json.loads(path.read_text()) for path in sorted(out_dir.glob("ids-*.json"))]
  assert len(per_worker) == len(list(load_spec_file(os.path.join(SPECS, spec)).tasks()))
  seen = [i for ids in per_worker for i in ids]
  assert len(seen) == len(set(seen)), "an example was read twice"
  assert sorted(seen) == list(range(ids_dataset.NUM_TRAIN)), "examples are missing"
  assert all(per_worker), "one worker read nothing"
  log = (tmp_path / "logs" / "worker-1.log").read_text()
  assert f"Input: {policy} sharding for pipeline " in log


# Lines that mean epoch 3 has begun: fit's progress line for it; the custom loop's for epoch 2.
def task_dirs_of(pid: int) -> list[str]:
  """The temporary dirs process `pid` writes as a non-chief task (ModelDir.task_dir)."""
  return glob.glob(os.path.join(tempfile.gettempdir(), f"tfdist-task-*-pid{pid}-*"))


EPOCH_3_BEGAN = [("fit", "[worker:1] Epoch 3/4"), ("custom", "[worker:0] Epoch 2/4:")]


@pytest.mark.xdist_group("two_worker_job")
@pytest.mark.parametrize("loop, trigger", EPOCH_3_BEGAN)
def test_killed_worker_resumes_from_backup(tmp_path, data_dir, two_worker_job, loop, trigger):
  """SIGKILL worker:1 mid-epoch; --restarts brings the job back from its last backup, and it
  ends with the weights of the job never killed."""
  model_dir, log_dir = tmp_path / "run", tmp_path / "logs"
  proc = subprocess.Popen(
      [sys.executable, "-m", "tfdist", "launch",
       f"--cluster_spec={os.path.join(SPECS, 'local-2workers.yaml')}", "--restarts=1",
       f"--log_dir={log_dir}", "--", "tfdist", "train", f"--model_dir={model_dir}",
       f"--data_dir={data_dir}", *TWO_WORKER_JOB, f"--loop={loop}", "--backup_every_steps=10",
       "--save_share=0", *THREAD_FLAGS],
      cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  output = []
  for line in proc.stdout:
    output.append(line)
    if line.startswith(trigger):
      time.sleep(0.6)  # into the middle of epoch 3, past a backup at step 10
      worker_log = (log_dir / "worker-1.log").read_text()
      pid = int(re.search(r"started worker:1 \(pid (\d+)", worker_log).group(1))
      assert task_dirs_of(pid)  # where a non-chief writes its backups and checkpoints
      os.kill(pid, signal.SIGKILL)
      break
  try:  # (a job that hangs fails the test; it does not hang it)
    output.append(proc.communicate(timeout=400)[0])
  except subprocess.TimeoutExpired:
    proc.kill()  # the launcher's tasks end with it
    output.append(proc.communicate()[0])
    pytest.fail("the restarted job hung:\n" + "".join(output)[-4000:])
  text = "".join(output)
  assert proc.returncode == 0, text[-4000:]
  assert "[launch] worker:1 exited with status -9" in text
  assert not task_dirs_of(pid)  # removed by the worker:1 that took its place
  assert "restarting every task (restart 1 of 1)" in text
  # Every worker resumes at the same step: the chief's backup, not a non-chief's own older one
  # (a kill can cut short its last background write).
  points = dict(re.findall(r"\[(worker:\d)\] .*Resumed from backup at (epoch \d+ after step \d+)",
                           text))
  assert set(points) == {"worker:0", "worker:1"} and len(set(points.values())) == 1, points
  resumed = re.search(r"\[worker:0\] .*Resumed from backup at epoch (\d+) after step (\d+)", text)
  assert resumed, text[-4000:]
  metrics = read_metrics(model_dir)
  assert metrics["resumed_from"] == {"epoch": int(resumed.group(1)), "step": int(resumed.group(2))}
  assert metrics["resumed_from"]["epoch"] >= 3  # not from the start
  assert metrics["epochs_completed"] == 4 and metrics["eval_accuracy"] >= 0.95
  print(f"weights_sha256 MWMS 2 workers, {loop}, SIGKILL: uninterrupted "
        f"{uninterrupted_weights(two_worker_job, loop)}, resumed at {metrics['resumed_from']} "
        f"{metrics['weights_sha256']}")  # (shown by pytest -rP)
  assert metrics["weights_sha256"] == uninterrupted_weights(two_worker_job, loop)
  assert not (model_dir / "backup").exists()


def test_missing_peer_ends_within_the_deadline(tmp_path):
  port = _free_port()
  config = {"cluster": {"worker": ["127.0.0.1:%d" % _free_port(), "127.0.0.1:%d" % port]},
            "task": {"type": "worker", "index": 0}}
  started = time.monotonic()
  result = run_tfdist("train", "--startup_timeout=5", f"--model_dir={tmp_path / 'run'}",
                      env=cli_env(TF_CONFIG=json.dumps(config)), timeout=120)
  assert result.returncode != 0
  assert time.monotonic() - started < 60
  assert (f"task worker:0: the cluster did not come together within 5 s: worker:1 at "
          f"127.0.0.1:{port} did not come up") in result.stderr


@pytest.mark.parametrize("task, others", [
    ("worker", {"worker": 1}),                        # MultiWorkerMirroredStrategy
    ("ps", {"chief": 1, "worker": 1}),                # a parameter server's plain gRPC server
    ("chief", {"worker": 1, "ps": 1}),                # the parameter-server chief
])
def test_busy_port_fails_at_once_naming_the_task(tmp_path, task, others):
  with socket.socket() as taken:
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    port = taken.getsockname()[1]
    cluster = {t: [f"127.0.0.1:{_free_port()}" for _ in range(n)] for t, n in others.items()}
    cluster.setdefault(task, []).insert(0, f"127.0.0.1:{port}")
    config = {"cluster": cluster, "task": {"type": task, "index": 0}}
    result = run_tfdist("train", f"--model_dir={tmp_path / 'run'}", "--startup_timeout=30",
                        env=cli_env(TF_CONFIG=json.dumps(config)), timeout=120)
  assert result.returncode == 1, result.stderr[-3000:]
  assert (f"tfdist train: error: task {task}:0 could not start its gRPC server on "
          f"127.0.0.1:{port}") in result.stderr
  assert "Traceback" not in result.stderr


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_sigterm_to_the_launcher_leaves_no_process(tmp_path, data_dir):
  from tests.helpers import processes_with
  marker = f"TFDIST_TEST_{os.getpid()}_{time.time_ns()}"
  proc = subprocess.Popen(
      [sys.executable, "-m", "tfdist", "launch",
       f"--cluster_spec={os.path.join(SPECS, 'local-2workers.yaml')}", f"--log_dir={tmp_path}",
       "--", "tfdist", "train", f"--model_dir={tmp_path / 'run'}", f"--data_dir={data_dir}",
       *THREAD_FLAGS],
      cwd=REPO, env=cli_env(**{marker: "1"}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)
  for line in proc.stdout:
    if "Epoch 2/" in line:
      break
  assert len(processes_with(marker)) >= 3
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=60) == 143
  assert processes_with(marker) == []


def test_the_start_up_deadline_covers_only_the_rendezvous(tmp_path, data_dir):
  """A model that takes longer to build than --startup_timeout is not killed: the deadline ends
  once the strategy exists (every peer is up)."""
  (tmp_path / "slow_models.py").write_text(
      "import time\nimport tf_keras as keras\n"
      "def build(input_shape, num_classes):\n"
      "    time.sleep(12)  # a large model, a slow restore, a long trace\n"
      "    return keras.Sequential([keras.layers.Flatten(input_shape=input_shape),\n"
      "                             keras.layers.Dense(num_classes)])\n")
  model_dir = tmp_path / "run"
  result = run_tfdist("launch", f"--cluster_spec={os.path.join(SPECS, 'local-2workers.yaml')}",
                      f"--log_dir={tmp_path / 'logs'}", "--", "tfdist", "train",
                      "--model=slow_models:build", "--startup_timeout=6", "--epochs=1",
                      "--steps_per_epoch=3", f"--model_dir={model_dir}", f"--data_dir={data_dir}",
                      *THREAD_FLAGS, env=cli_env(PYTHONPATH=f"{tmp_path}:{REPO}"), timeout=300)
  assert result.returncode == 0, result.stdout[-4000:]
  assert "did not come together" not in result.stdout
  assert read_metrics(model_dir)["epochs_completed"] == 1


@pytest.mark.xdist_group("two_worker_job")
@pytest.mark.parametrize("loop, trigger", EPOCH_3_BEGAN)
def test_sigterm_to_a_worker_saves_and_resumes_with_no_step_redone(tmp_path, data_dir, loop,
                                                                    trigger, two_worker_job):
  """SIGTERM (preemption) to worker:1 mid-epoch: every worker saves at the next step boundary and
  exits 75; the launcher starts the job again without using --restarts; it resumes there and
  ends with the weights of the job never preempted."""
  steps_per_epoch = 150  # a whole mnist5k epoch (62 steps) can pass before the SIGTERM lands
  model_dir, log_dir = tmp_path / "run", tmp_path / "logs"
  proc = subprocess.Popen(
      [sys.executable, "-m", "tfdist", "launch",
       f"--cluster_spec={os.path.join(SPECS, 'local-2workers.yaml')}", "--restarts=0",
       f"--log_dir={log_dir}", "--", "tfdist", "train", f"--model_dir={model_dir}",
       f"--data_dir={data_dir}", *TWO_WORKER_JOB, f"--loop={loop}", *THREAD_FLAGS],
      cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  output = []
  for line in proc.stdout:
    output.append(line)
    if line.startswith(trigger):  # into the middle of epoch 3
      time.sleep(0.7)
      pid = int(re.search(r"started worker:1 \(pid (\d+)", (log_dir / "worker-1.log").read_text())
                .group(1))
      os.kill(pid, signal.SIGTERM)
      break
  output.extend(proc.stdout)
  assert proc.wait(timeout=400) == 0, "".join(output)[-4000:]
  text = "".join(output)
  saved = {m.groups() for m in re.finditer(
      r"\[(worker:\d)\] .*Preempted: training state saved at epoch (\d+) after step (\d+); "
      r"exiting with status 75", text)}
  assert {task for task, _, _ in saved} == {"worker:0", "worker:1"}, text[-4000:]
  points = {(int(e), int(s)) for _, e, s in saved}
  assert len(points) == 1, points  # every worker saved at the same step
  (epoch, step), = points
  assert epoch == 3 and 0 < step < steps_per_epoch
  assert "was preempted and the job saved its state; starting the job again" in text
  assert "(not counted as a restart)" in text and "restarting every task" not in text
  for task in ("worker:0", "worker:1"):
    assert f"[{task}] " in text and re.search(
        rf"\[{task}\] .*Resumed from backup at epoch {epoch} after step {step} ", text)
  metrics = read_metrics(model_dir)
  assert metrics["resumed_from"] == {"epoch": epoch, "step": step}  # 0 steps redone
  assert metrics["epochs_completed"] == 4 and metrics["eval_accuracy"] >= 0.95
  print(f"weights_sha256 MWMS 2 workers, {loop}, SIGTERM: uninterrupted "
        f"{uninterrupted_weights(two_worker_job, loop)}, resumed at {metrics['resumed_from']} "
        f"{metrics['weights_sha256']}")  # (shown by pytest -rP)
  assert metrics["weights_sha256"] == uninterrupted_weights(two_worker_job, loop)
  assert not (model_dir / "backup").exists()
