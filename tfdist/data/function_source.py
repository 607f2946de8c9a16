"""A user's own data: `--dataset=package.module:function`.

The function returns the examples of one split, unbatched and unshuffled, as a
tf.data.Dataset of (features, label) with integer class labels:

    def my_data(split):                      # "train", or the eval split ("test")
      files = tf.io.gfile.glob(f"/data/{split}-*.csv")
      return (tf.data.Dataset.from_tensor_slices(sorted(files))
              .interleave(tf.data.TextLineDataset)
              .map(parse_row))

tfdist does the rest under every strategy: it shards (FILE, each pipeline
reading its own files, when the dataset reads a list of files at least as long
as the number of input pipelines; else DATA, each keeping every n-th example),
shuffles, repeats and batches at the per-replica batch. The dataset must give
the same order on every call for DATA sharding to see every example once per
epoch: shuffle nothing (tfdist does), or seed it. A function that also takes
`input_context` (a tf.distribute.InputContext) shards itself and tfdist leaves
its sharding alone.

Before training, one pass over the train labels counts the examples and the
classes (the largest label + 1). The function is first called once the strategy
is built (TensorFlow's runtime must not start before), so its errors come after
a cluster's start-up, as one line on every task.
"""

from __future__ import annotations

import inspect
from typing import Callable, Optional

import tensorflow as tf
# TF's own auto-shard rewrite, the one `experimental_distribute_dataset` applies: there is
# no public call that shards a dataset by its files.
from tensorflow.python.data.experimental.ops.distribute import _AutoShardDataset

from tfdist._input import short
from tfdist._user_code import import_function, innermost_frame
from tfdist.data.batching import FILE
from tfdist.data.files import count_files
from tfdist.data.options import DataSourceError
from tfdist.data.source import DatasetSource

DataFn = Callable[..., tf.data.Dataset]

_ONE_PIPELINE = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0,
                                           num_replicas_in_sync=1)


def import_data_fn(name: str) -> DataFn:
  """The user's `package.module:function` for `data.dataset`."""
  return import_function(name, "data.dataset", DataSourceError)


class FunctionSource(DatasetSource):
  """Train and eval data from a user's function (see the module docstring).

  Example:
    source = FunctionSource(my_data, eval_split="test")
  """

  def __init__(self, fn: DataFn, train_split: str = "train", eval_split: Optional[str] = None,
               shuffle_buffer: int = 10_000):
    self.fn = fn
    self.name = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__name__', repr(fn))}"
    try:
      params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
      params = {}
    if "split" not in params:
      raise DataSourceError(f"`data.dataset` ({self.name}): the function must take `split` "
                            "(and optionally `input_context`)")
    self.shards_itself = "input_context" in params
    self.train_split = train_split
    self.eval_split = eval_split or "test"
    self.shuffle_buffer = shuffle_buffer
    self._facts: Optional[tuple[tuple, int, int, int]] = None

  # The function is first called by `prepare`: after the strategy is built, since building
  # any dataset starts TensorFlow's runtime, and MultiWorkerMirroredStrategy must configure
  # it first.

  def prepare(self) -> "FunctionSource":
    """Calls the function for both splits and counts the train examples and classes."""
    if self._facts is None:
      train = self._call(self.train_split, _ONE_PIPELINE)
      self._call(self.eval_split, _ONE_PIPELINE)  # fails now, not after training
      num_examples, num_classes = self._count(train)
      files = 0 if self.shards_itself else count_files(train)
      self._facts = tuple(train.element_spec[0].shape), num_classes, num_examples, files
    return self

  def _fact(self, index: int):
    if self._facts is None:
      raise RuntimeError(f"{self.name}: call prepare() before reading what the data holds")
    return self._facts[index]

  @property
  def input_shape(self) -> tuple:
    return self._fact(0)

  @property
  def num_classes(self) -> int:
    return self._fact(1)

  @property
  def num_train_examples(self) -> int:
    return self._fact(2)

  @property
  def num_train_files(self) -> int:
    return self._fact(3)

  def _call(self, split: str, context: tf.distribute.InputContext) -> tf.data.Dataset:
    kwargs = {"split": split, **({"input_context": context} if self.shards_itself else {})}
    try:
      ds = self.fn(**kwargs)
    except Exception as e:  # pylint: disable=broad-except  (the user's code: one line, where)
      raise DataSourceError(
          f"`data.dataset` ({self.name}) raised {type(e).__name__} for split {split!r}: "
          f"{short(str(e), 200)} ({innermost_frame(e.__traceback__)})") from None
    _check_examples(ds, self.name, split)
    return ds

  def _count(self, ds: tf.data.Dataset) -> tuple[int, int]:
    count, largest = ds.map(lambda features, label: tf.cast(label, tf.int64)).reduce(
        (tf.constant(0, tf.int64), tf.constant(-1, tf.int64)),
        lambda acc, label: (acc[0] + 1, tf.maximum(acc[1], label)))
    if int(count) == 0:
      raise DataSourceError(f"`data.dataset` ({self.name}): split {self.train_split!r} "
                            "has no examples")
    return int(count), int(largest) + 1

  def _read_train(self, context, policy, shuffle_files, seed):
    ds = self._call(self.train_split, context)
    if policy != FILE:
      return ds
    # The pipeline's own files: TF rewrites the dataset's file list to every n-th file.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.FILE
    return _AutoShardDataset(ds.with_options(options), context.num_input_pipelines,
                             context.input_pipeline_id, context.num_replicas_in_sync)

  def _read_eval(self):
    return self._call(self.eval_split, _ONE_PIPELINE)


def _check_examples(ds: object, name: str, split: str) -> None:
  """One line unless `ds` is a dataset of (features, integer scalar label)."""
  where = f"`data.dataset` ({name}) for split {split!r}"
  if not isinstance(ds, tf.data.Dataset):
    raise DataSourceError(f"{where} returned {type(ds).__name__}; expected a tf.data.Dataset")
  spec = ds.element_spec
  if not isinstance(spec, tuple) or len(spec) != 2:
    raise DataSourceError(f"{where} gives elements {short(spec, 120)}; expected "
                          "(features, label) pairs")
  features, label = spec
  if not isinstance(features, tf.TensorSpec) or not features.shape.is_fully_defined():
    raise DataSourceError(
        f"{where}: features are {short(features, 120)}; expected one tensor of a fixed shape "
        "per example (unbatched: tfdist batches)")
  if not isinstance(label, tf.TensorSpec) or label.shape.rank != 0 or not label.dtype.is_integer:
    raise DataSourceError(
        f"{where}: labels are {short(label, 120)}; expected one integer class id per example "
        "(unbatched: tfdist batches)")
