"""Small training decisions: backup intervals under steps_per_execution, when saves happen."""

import pytest
import tensorflow as tf

from tfdist.train import TrainOptions, TrainOptionsError
from tfdist.train.fit import backup_frequency


def test_backup_interval_counts_steps_not_executions():
  default = tf.distribute.get_strategy()
  assert backup_frequency(default, TrainOptions(backup_every_steps=50), 10) == 5
  assert backup_frequency(default, TrainOptions(backup_every_steps=5), 10) == 1
  assert backup_frequency(default, TrainOptions(backup_every_steps=50), 1) == 50
  assert backup_frequency(default, TrainOptions(backup_every_steps=0), 10) == "epoch"


@pytest.mark.parametrize("user_steps_per_execution, save_freq", [(None, 5), (1, 50), (25, 2)])
def test_backups_follow_the_model_own_steps_per_execution(tmp_path, data_dir,
                                                          user_steps_per_execution, save_freq):
  """A model the user compiled runs its own steps_per_execution; backups count real steps."""
  from tfdist.data import DataOptions, load_source
  from tfdist.models import resolve
  from tfdist.checkpoint.backup import BackupAndRestore
  from tfdist.models import compile_if_needed
  from tfdist.train.fit import output_callbacks
  from tfdist.train.trainer import Trainer
  options = TrainOptions(model_dir=str(tmp_path / "run"), backup_every_steps=50,
                         steps_per_execution=10)
  trainer = Trainer(strategy=tf.distribute.get_strategy(), options=options, global_batch_size=64,
                    source=load_source(DataOptions(data_dir=data_dir)).prepare(),
                    model_fn=resolve("mlp"))
  model = resolve("mlp")(input_shape=(28, 28, 1), num_classes=10)
  if user_steps_per_execution:
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  steps_per_execution=user_steps_per_execution)
  model = compile_if_needed(model, learning_rate=1e-3, steps_per_execution=10, class_ids=True)
  backup = next(c for c in output_callbacks(trainer, model)
                if isinstance(c, BackupAndRestore))
  assert backup.save_freq == save_freq


def test_the_save_intervals_bound_what_saving_costs():
  from tfdist.checkpoint.schedule import backup_interval, checkpoint_interval
  # A 45 ms save, 16 ms steps: 282 steps keep one save within 1% of their training time.
  assert backup_interval(0.045, 0.016, least_steps=50, share=0.01) == 282
  assert 0.045 / (282 * 0.016) <= 0.01 < 0.045 / (281 * 0.016)
  assert backup_interval(0.001, 0.016, least_steps=50, share=0.01) == 50  # the least wins
  assert backup_interval(5.0, 0.016, least_steps=50, share=0) == 50       # 0: exactly
  # A 60 ms save, 0.9 s epochs: a checkpoint every 7 epochs costs at most 1%.
  assert checkpoint_interval(0.06, 0.9, share=0.01) == 7
  assert checkpoint_interval(0.06, 600.0, share=0.01) == 1                # long epochs: each
  assert checkpoint_interval(5.0, 0.9, share=0) == 1
  with pytest.raises(TrainOptionsError, match="`train.save_share` \\(1.5\\)"):
    TrainOptions(save_share=1.5)


def test_the_save_schedule_times_the_first_save_of_each_kind(monkeypatch):
  """Decision logic only (a fake clock): the first backup and checkpoint are written in the
  foreground and timed; the intervals widen from them; later saves go to the background."""
  from tfdist.checkpoint import schedule as saving
  now = [0.0]
  monkeypatch.setattr(saving.time, "perf_counter", lambda: now[0])
  written = []

  def save(how):  # in the background: returns in 1 ms, its write takes 60 ms more
    written.append(how)
    now[0] += 0.001 if how.experimental_enable_async_checkpoint else 0.061

  class Checkpoint:
    def sync(self):
      now[0] += 0.06

  def measured(**kwargs):  # a schedule that has clocked 40 steps of 14 ms
    schedule = saving.SaveSchedule(tf.distribute.get_strategy(), least_backup_steps=50,
                                   share=0.01, steps_per_epoch=62, **kwargs)
    schedule.steps_done(10)        # the first call (tracing) starts the clock
    for _ in range(4):
      now[0] += 0.14
      schedule.steps_done(10)
    assert schedule.seconds_per_step == pytest.approx(0.014)
    return schedule

  schedule = measured()
  assert schedule.checkpoint_due(last=False)  # the run's first epoch: timed
  schedule.save_checkpoint(save, Checkpoint())
  assert schedule.checkpoint_epochs == 14     # 0.06 / (0.01 / 2 * 0.014 * 62): half the share
  assert [schedule.checkpoint_due(last=False) for _ in range(14)] == [False] * 13 + [True]
  assert schedule.checkpoint_due(last=True)   # the last epoch always

  schedule = measured()
  written.clear()
  started = now[0]
  schedule.save_backup(save, Checkpoint())    # a set-up save, then a timed one, waited for
  assert schedule.backup_steps == 858         # 0.06 / (0.01 / 2 * 0.014)
  schedule.save_backup(save, Checkpoint())    # not waited for
  assert schedule.backup_steps == 858 and now[0] - started == pytest.approx(0.122 + 0.001)
  assert written == [saving.IN_BACKGROUND] * 3

  # Saved in the foreground (Keras 3 models), the whole save is timed.
  foreground = measured(background=saving.IN_FOREGROUND)
  foreground.save_backup(save, Checkpoint())
  assert foreground.backup_steps == 872 and written[-1] is saving.IN_FOREGROUND  # once, 61 ms

  exact = saving.SaveSchedule(tf.distribute.get_strategy(), least_backup_steps=50, share=0,
                              steps_per_epoch=62)
  exact.save_backup(save, Checkpoint())
  assert written[-1] is saving.IN_BACKGROUND and exact.backup_steps == 50
  assert all(exact.checkpoint_due(last=False) for _ in range(3))


def test_background_saves_are_written_at_the_lowest_priority(tmp_path):
  """The writer thread TensorFlow starts for a background save runs at nice 19; the
  training threads keep theirs."""
  import os
  import threading
  from tfdist.checkpoint import schedule as saving
  checkpoint = tf.train.Checkpoint(v=tf.Variable(tf.zeros([1000])))
  saving.save_at_low_priority(
      lambda how: checkpoint.write(str(tmp_path / "ckpt"), options=how), saving.IN_BACKGROUND)
  checkpoint.sync()
  niceness = {t.name: os.getpriority(os.PRIO_PROCESS, t.native_id)
              for t in threading.enumerate() if t.is_alive()}
  assert niceness[threading.main_thread().name] == os.getpriority(os.PRIO_PROCESS, 0) != 19
  assert 19 in niceness.values(), niceness
  assert tf.train.load_checkpoint(str(tmp_path / "ckpt")).has_tensor(
      "v/.ATTRIBUTES/VARIABLE_VALUE")


def test_mixed_precision_auto_is_bfloat16_only_where_native_and_safe():
  from tfdist.train import precision
  decide = precision.choose_policy
  assert decide("auto", builtin_model=True, gpu=False, native_bfloat16=True)[0] == "bfloat16"
  assert decide("auto", builtin_model=False, gpu=False, native_bfloat16=True)[0] == "off"
  assert decide("auto", builtin_model=True, gpu=True, native_bfloat16=True)[0] == "off"
  assert decide("auto", builtin_model=True, gpu=False, native_bfloat16=False)[0] == "off"
  assert decide("float16", builtin_model=False, gpu=True, native_bfloat16=False) == (
      "float16", "--mixed_precision=float16")


def test_native_bfloat16_reads_cpu_flags(tmp_path):
  from tfdist.train import precision
  (tmp_path / "yes").write_text("flags\t: fpu avx512f avx512_bf16 amx_tile\n")
  (tmp_path / "no").write_text("flags\t: fpu avx2\n")
  assert precision.cpu_has_native_bfloat16(str(tmp_path / "yes"))
  assert not precision.cpu_has_native_bfloat16(str(tmp_path / "no"))
  assert not precision.cpu_has_native_bfloat16(str(tmp_path / "missing"))


def test_float16_needs_fit():
  import pytest
  from tfdist.train import TrainOptionsError
  with pytest.raises(TrainOptionsError, match="needs loss scaling"):
    TrainOptions(loop="custom", mixed_precision="float16")
  with pytest.raises(TrainOptionsError, match="`train.mixed_precision`"):
    TrainOptions(mixed_precision="int8")


def test_checkpoint_names_round_trip():
  from tfdist.checkpoint.model_dir import CHECKPOINT_TEMPLATE, checkpoint_epoch
  assert CHECKPOINT_TEMPLATE.format(epoch=7) == "ckpt-0007"
  assert checkpoint_epoch("/m/checkpoints/" + CHECKPOINT_TEMPLATE.format(epoch=12)) == 12
  assert checkpoint_epoch("/m/checkpoints/ckpt-0003.index") is None
  assert checkpoint_epoch("/m/checkpoints/checkpoint") is None


def test_epoch_clock_leaves_out_the_first_epoch(monkeypatch):
  """examples/s and CPU ms per step are means over the epochs after the first (tracing)."""
  from tfdist.train import clock as clock_module
  wall, cpu = [0.0], [0.0]
  monkeypatch.setattr(clock_module.time, "perf_counter", lambda: wall[0])
  monkeypatch.setattr(clock_module.time, "process_time", lambda: cpu[0])
  clock = clock_module.EpochClock(global_batch_size=64)
  assert clock.examples_per_sec is None and clock.cpu_ms_per_step is None
  for seconds, cpu_seconds in ((5.0, 9.0), (1.0, 1.5), (2.0, 2.5)):  # 100 steps each
    clock.start()
    wall[0] += seconds
    cpu[0] += cpu_seconds
    assert clock.stop(steps=100) == pytest.approx(6400 / seconds)
    assert clock.last_seconds == seconds
  assert clock.examples_per_sec == pytest.approx((6400 + 3200) / 2)
  assert clock.cpu_ms_per_step == pytest.approx((15 + 25) / 2)
  clock.start()
  assert clock.stop(steps=0) is None and len(clock.rates) == 3  # an epoch without steps
  only = clock_module.EpochClock(global_batch_size=64)
  only.start()
  wall[0] += 2.0
  only.stop(steps=10)
  assert only.examples_per_sec == pytest.approx(320)  # one epoch: that epoch
  assert clock.step_ms is None  # no epoch marked the end of its steps


def test_step_time_leaves_out_the_saves_after_the_steps(monkeypatch):
  from tfdist.train import clock as clock_module
  wall = [0.0]
  monkeypatch.setattr(clock_module.time, "perf_counter", lambda: wall[0])
  clock = clock_module.EpochClock(global_batch_size=64)
  for steps_seconds, save_seconds in ((9.0, 1.0), (2.0, 6.0), (3.0, 0.0)):  # 100 steps each
    clock.start()
    wall[0] += steps_seconds
    clock.steps_ended()
    wall[0] += save_seconds
    clock.stop(steps=100)
  assert clock.step_ms == pytest.approx((20 + 30) / 2)  # after the first epoch, no saves
  assert clock.examples_per_sec == pytest.approx((6400 / 8 + 6400 / 3) / 2)  # with them


def test_first_step_time_waits_for_a_scheduled_step_once(monkeypatch):
  """Under ParameterServerStrategy, fit's batch hooks get a RemoteValue as soon as the step
  is scheduled: start-up is timed when the first step is done, and only that step waited for."""
  from tfdist.train import callbacks
  now = [10.0]
  monkeypatch.setattr(callbacks.time, "perf_counter", lambda: now[0])
  waits = []

  class ScheduledStep:  # the RemoteValue's one method the meter uses
    def fetch(self):
      waits.append(now[0])
      now[0] += 3.0  # a worker finishes the step
      return {"loss": 0.5}

  meter = callbacks.RunMeter(global_batch_size=64, started=8.0)
  meter.on_train_begin()
  meter.on_epoch_begin(0)
  for step in range(3):
    meter.on_train_batch_begin(step)
    meter.on_train_batch_end(step, ScheduledStep())
  assert waits == [10.0]
  assert meter.first_step_seconds == pytest.approx(5.0)  # 8 -> 10 scheduled -> 13 done


def test_a_resumed_task_saves_after_the_backup_it_read_is_gone(tmp_path):
  """A non-chief reads the chief's backup, and by its first save of its own the chief has
  replaced that backup: the save needs none of its files (the counter was read with it)."""
  import shutil
  from tfdist.train.loop_actions import read_latest_backup

  def backup():
    return tf.train.Checkpoint(step=tf.Variable(0, dtype=tf.int64))

  chief_dir, worker_dir = str(tmp_path / "backup"), str(tmp_path / "worker-backup")
  assert not read_latest_backup(backup(), chief_dir)
  chief = backup()
  chief.step.assign(13)
  chief_manager = tf.train.CheckpointManager(chief, chief_dir, max_to_keep=1)
  for _ in range(3):
    chief_manager.save()
  resumed = backup()
  assert read_latest_backup(resumed, chief_dir)
  shutil.rmtree(chief_dir)  # the chief's next backup removed this one
  saved = tf.train.CheckpointManager(resumed, worker_dir, max_to_keep=1).save()
  assert int(resumed.step) == 13
  assert saved.endswith("ckpt-4")  # numbered after the backup it resumed from
