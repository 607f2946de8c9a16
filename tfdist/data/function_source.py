"""A user's own data: `--dataset=package.module:function`.

The function returns the examples of one split, unbatched and unshuffled, as a
tf.data.Dataset of (features, label) or (features, label, sample_weight): any
features and numeric labels, as data/examples.py says:

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

Before training, one pass over the train split counts the examples and, where the
labels are class ids, the classes (the largest label + 1). The function is first called once the strategy
is built (TensorFlow's runtime must not start before), so its errors come after
a cluster's start-up, as one line on every task.
"""

from __future__ import annotations

import inspect
from typing import Callable, NamedTuple, Optional

import tensorflow as tf
# TF's own auto-shard rewrite, the one `experimental_distribute_dataset` applies: there is
# no public call that shards a dataset by its files.
from tensorflow.python.data.experimental.ops.distribute import _AutoShardDataset

from tfdist._input import short
from tfdist._user_code import import_function, innermost_frame
from tfdist.data.batching import FILE
from tfdist.data.examples import ExampleSpec
from tfdist.data.graph import count_files, is_batched
from tfdist.data.options import DataSourceError
from tfdist.data.source import DatasetSource

DataFn = Callable[..., tf.data.Dataset]

_ONE_PIPELINE = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0,
                                           num_replicas_in_sync=1)


class _Facts(NamedTuple):
  """What `prepare` reads from the data."""

  example_spec: ExampleSpec
  num_classes: Optional[int]
  num_train_examples: int
  num_train_files: int


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
    self._facts: Optional[_Facts] = None

  # The function is first called by `prepare`: after the strategy is built, since building
  # any dataset starts TensorFlow's runtime, and MultiWorkerMirroredStrategy must configure
  # it first.

  def prepare(self) -> "FunctionSource":
    """Calls the function for both splits, checks they hold the same kind of examples, and
    counts the train examples (and the classes, where labels are class ids)."""
    if self._facts is None:
      train, spec = self._call(self.train_split, _ONE_PIPELINE)
      _, eval_spec = self._call(self.eval_split, _ONE_PIPELINE)  # fails now, not after training
      if not spec.same_structure(eval_spec):
        raise DataSourceError(
            f"`data.dataset` ({self.name}): splits {self.train_split!r} and {self.eval_split!r} "
            f"hold different examples ({spec.describe()}; vs {eval_spec.describe()}); expected "
            "the same structure and dtypes")
      num_examples, num_classes = self._count(train, spec)
      files = 0 if self.shards_itself else count_files(train)
      self._facts = _Facts(spec, num_classes, num_examples, files)
    return self

  def _fact(self, name: str):
    if self._facts is None:
      raise RuntimeError(f"{self.name}: call prepare() before reading what the data holds")
    return getattr(self._facts, name)

  @property
  def example_spec(self) -> ExampleSpec:
    return self._fact("example_spec")

  @property
  def num_classes(self) -> Optional[int]:
    return self._fact("num_classes")

  @property
  def num_train_examples(self) -> int:
    return self._fact("num_train_examples")

  @property
  def num_train_files(self) -> int:
    return self._fact("num_train_files")

  def _call(self, split: str,
            context: tf.distribute.InputContext) -> tuple[tf.data.Dataset, ExampleSpec]:
    kwargs = {"split": split, **({"input_context": context} if self.shards_itself else {})}
    try:
      ds = self.fn(**kwargs)
    except Exception as e:  # pylint: disable=broad-except  (the user's code: one line, where)
      raise DataSourceError(
          f"`data.dataset` ({self.name}) raised {type(e).__name__} for split {split!r}: "
          f"{short(str(e), 200)} ({innermost_frame(e.__traceback__)})") from None
    where = f"`data.dataset` ({self.name}) for split {split!r}"
    if not isinstance(ds, tf.data.Dataset):
      raise DataSourceError(f"{where} returned {type(ds).__name__}; expected a tf.data.Dataset")
    spec = ExampleSpec.of(ds.element_spec, where)
    if tf.executing_eagerly() and is_batched(ds):  # (checked by `prepare`, not when traced)
      raise DataSourceError(f"{where} gives batches ({spec.describe()}); expected unbatched "
                            "examples: tfdist batches them at the per-replica batch")
    return ds, spec

  def _count(self, ds: tf.data.Dataset, spec: ExampleSpec) -> tuple[int, Optional[int]]:
    """(examples, classes: the largest class id + 1, or None when labels are not class ids)."""
    labels = ds.map(lambda *element: tf.cast(element[1], tf.int64) if spec.class_ids
                    else tf.constant(-1, tf.int64))
    count, largest = labels.reduce(
        (tf.constant(0, tf.int64), tf.constant(-1, tf.int64)),
        lambda acc, label: (acc[0] + 1, tf.maximum(acc[1], label)))
    if int(count) == 0:
      raise DataSourceError(f"`data.dataset` ({self.name}): split {self.train_split!r} "
                            "has no examples")
    return int(count), (int(largest) + 1 if spec.class_ids else None)

  def _read_train(self, context, policy, shuffle_files, seed):
    ds, _ = self._call(self.train_split, context)
    if policy != FILE:
      return ds
    # The pipeline's own files: TF rewrites the dataset's file list to every n-th file.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.FILE
    return _AutoShardDataset(ds.with_options(options), context.num_input_pipelines,
                             context.input_pipeline_id, context.num_replicas_in_sync)

  def _read_eval(self):
    return self._call(self.eval_split, _ONE_PIPELINE)[0]
