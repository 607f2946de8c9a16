"""Communication: the bytes a step exchanges (computed against hand-worked figures), and
gradients all-reduced in 16 bits."""

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO, cli_env
from tfdist.cluster import ClusterSpec, TaskConfig, TaskId
from tfdist.strategy.choice import choose
from tfdist.strategy.options import (MIRRORED, MULTI_WORKER_MIRRORED, ONE_DEVICE,
                                     PARAMETER_SERVER, StrategyError, StrategyOptions)
from tfdist.train.communication import Weight, bytes_per_step, describe, model_weights

DENSE = Weight(7850)  # Dense(784 -> 10): 7,850 float32 values, 31,400 bytes
TABLE = Weight(8000, row_elements=8, lookups_per_example=5)  # Embedding(1000, 8), 5 ids each


@pytest.mark.unit
@pytest.mark.parametrize("replicas, value_bytes, each_way", [
    (2, 4, 31_400),   # 2(2-1)/2 x 31,400
    (4, 4, 47_100),   # 2(4-1)/4 x 31,400
    (2, 2, 15_700),   # bfloat16: half
    (8, 2, 27_475),   # 2(8-1)/8 x 15,700
])
def test_a_ring_all_reduce_sends_2_n_minus_1_over_n_of_the_gradients(replicas, value_bytes,
                                                                     each_way):
  figures = bytes_per_step(MULTI_WORKER_MIRRORED, [DENSE], workers=replicas, replicas=replicas,
                           worker_batch=32, allreduce_bytes=value_bytes)
  assert figures["sent_bytes_per_step"] == figures["received_bytes_per_step"] == each_way
  assert figures["over"] == "network" and figures["dense_gradient_bytes"] == 31_400


@pytest.mark.unit
def test_sparse_gradients_are_all_gathered_uncompressed():
  # A worker's 32 examples look up 160 rows: 160 x 8 x 4 = 5,120 bytes + 160 x 4 of ids.
  figures = bytes_per_step(MULTI_WORKER_MIRRORED, [DENSE, TABLE], workers=2, replicas=2,
                           worker_batch=32, allreduce_bytes=2)
  assert figures["sparse_rows_bytes"] == 5_760
  assert figures["sent_bytes_per_step"] == 15_700 + 5_760  # its rows to the one other worker
  three = bytes_per_step(MULTI_WORKER_MIRRORED, [TABLE], workers=3, replicas=3, worker_batch=32)
  assert three["sent_bytes_per_step"] == 2 * 5_760  # relayed around the ring to 2 others


@pytest.mark.unit
def test_a_parameter_server_step_reads_variables_and_pushes_gradients():
  figures = bytes_per_step(PARAMETER_SERVER, [DENSE, TABLE], workers=2, replicas=1,
                           worker_batch=64, allreduce_bytes=2)
  rows = 64 * 5 * 8 * 4  # 10,240
  assert figures["received_bytes_per_step"] == 31_400 + rows
  assert figures["sent_bytes_per_step"] == 31_400 + rows + 64 * 5 * 4
  assert "10,240 bytes of embedding rows" in figures["formula"]


@pytest.mark.unit
def test_one_machine_copies_between_devices_and_one_device_exchanges_nothing():
  mirrored = bytes_per_step(MIRRORED, [DENSE], workers=1, replicas=2, worker_batch=64)
  assert mirrored["over"] == "device copies" and mirrored["sent_bytes_per_step"] == 31_400
  single = bytes_per_step(ONE_DEVICE, [DENSE], workers=1, replicas=1, worker_batch=64)
  assert single["over"] == "none" and single["sent_bytes_per_step"] == 0
  assert describe(single) == "no gradient exchange"
  assert describe(mirrored) == "31.4 kB/step sent per worker (device copies, computed)"


@pytest.mark.unit
@pytest.mark.parametrize("generation", ["tf_keras", "keras3"])
def test_a_models_tables_have_sparse_gradients(generation):
  from tfdist.models import generations  # pylint: disable=import-outside-toplevel
  keras = generations.keras_of(generations.KERAS2 if generation == "tf_keras"
                               else generations.KERAS3)
  ids = keras.Input((5,), dtype="int32")
  rows = keras.layers.Embedding(1000, 8)(ids)
  model = keras.Model(ids, keras.layers.Dense(2)(keras.layers.Flatten()(rows)))
  weights = model_weights(model)
  assert [w for w in weights if w.sparse] == [TABLE]
  assert sorted(w.elements for w in weights if not w.sparse) == [2, 80]


@pytest.mark.unit
def test_compression_is_refused_under_parameter_servers():
  spec = ClusterSpec.from_dict({"chief": ["localhost:1"], "worker": ["localhost:2"],
                                "ps": ["localhost:3"]})
  config = TaskConfig(spec, TaskId.parse("chief:0"))
  with pytest.raises(StrategyError, match=r"^`strategy.allreduce_dtype` \('bfloat16'\): "
                                          "ParameterServerStrategy all-reduces nothing"):
    choose(StrategyOptions(allreduce_dtype="bfloat16"), config, 0)
  with pytest.raises(StrategyError, match=r"`strategy.allreduce_dtype` \('int8'\) must be one "
                                          "of float32, bfloat16, float16"):
    StrategyOptions(allreduce_dtype="int8")


@pytest.mark.e2e
def test_gradients_are_summed_in_16_bits_by_every_keras_optimizer():
  """Two replicas each give 1 + 2**-12 (exact in float32, 1.0 in 16 bits): one SGD step with
  learning rate 1 moves a variable by the sum the all-reduce gave; rows stay float32."""
  result = subprocess.run([sys.executable, "-m", "tests.cluster_scripts.compressed_sum"],
                          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  steps = json.loads(result.stdout.strip().splitlines()[-1])
  exact = -2 * (1 + 2 ** -12)
  for kind in ("tf_keras", "tf_keras_legacy", "keras3"):
    assert steps[f"{kind}/float32"] == {"compressed": False, "dense": exact, "rows": exact}
    for dtype in ("bfloat16", "float16"):
      assert steps[f"{kind}/{dtype}"] == {"compressed": True, "dense": -2.0, "rows": exact}, kind


@pytest.mark.unit
def test_the_projection_adds_the_ring_all_reduce_at_the_links_rate():
  from tfdist.bench.communication import link_bits_per_s, projected  # pylint: disable=import-outside-toplevel
  assert link_bits_per_s("10gbit") == 10 ** 10 and link_bits_per_s("100mbit") == 10 ** 8
  # 0.9 MB of gradients: 7.2 ms at 1 Gbit/s; the ring sends 2(n-1)/n of them.
  two, four = (projected(25.0, 900_136, "1gbit", n, 64) for n in (2, 4))
  assert two["communication_ms"] == pytest.approx(7.201088)
  assert four["communication_ms"] == pytest.approx(1.5 * 7.201088)
  assert four["step_ms"] == pytest.approx(25.0 + 10.801632)
  assert four["efficiency"] == pytest.approx(25.0 / 35.801632)
  assert four["examples_per_sec"] == pytest.approx(4 * 64 / 35.801632 * 1000)
