"""Small training decisions: backup intervals under steps_per_execution."""

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
  from tfdist.train.callbacks import BackupAndRestore
  from tfdist.train.fit import compile_if_needed, output_callbacks
  from tfdist.train.run import Run
  options = TrainOptions(model_dir=str(tmp_path / "run"), backup_every_steps=50,
                         steps_per_execution=10)
  run = Run(strategy=tf.distribute.get_strategy(), options=options, global_batch_size=64,
            source=load_source(DataOptions(data_dir=data_dir)))
  model = resolve("mlp")((28, 28, 1), 10)
  if user_steps_per_execution:
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  steps_per_execution=user_steps_per_execution)
  model = compile_if_needed(model, options)
  backup = next(c for c in output_callbacks(run, model) if isinstance(c, BackupAndRestore))
  assert backup.save_freq == save_freq


def test_the_backup_interval_bounds_what_saving_costs():
  from tfdist.train.callbacks import backup_interval
  # A 45 ms save, 16 ms steps: 141 steps keep one save within 2% of their training time.
  assert backup_interval(0.045, 0.016, least_steps=50, share=0.02) == 141
  assert 0.045 / (141 * 0.016) <= 0.02 < 0.045 / (140 * 0.016)
  assert backup_interval(0.001, 0.016, least_steps=50, share=0.02) == 50  # the least wins
  assert backup_interval(5.0, 0.016, least_steps=50, share=0) == 50       # 0: exactly
  with pytest.raises(TrainOptionsError, match="`train.backup_save_share` \\(1.5\\)"):
    TrainOptions(backup_save_share=1.5)


def test_mixed_precision_auto_is_bfloat16_only_where_native_and_safe():
  from tfdist.train import precision
  decide = precision.decide
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
  from tfdist.train.outputs import CHECKPOINT_TEMPLATE, checkpoint_epoch
  assert CHECKPOINT_TEMPLATE.format(epoch=7) == "ckpt-0007"
  assert checkpoint_epoch("/m/checkpoints/" + CHECKPOINT_TEMPLATE.format(epoch=12)) == 12
  assert checkpoint_epoch("/m/checkpoints/ckpt-0003.index") is None
  assert checkpoint_epoch("/m/checkpoints/checkpoint") is None
