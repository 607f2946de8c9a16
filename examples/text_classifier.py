"""A text classifier on token lists of different lengths: tfdist pads each batch to its
longest sentence (0 is padding, masked by the embedding).

    python examples/text_classifier.py --model_dir=/tmp/tfdist/text
    tfdist launch --cluster_spec=configs/clusters/local-2workers.yaml -- \\
        python examples/text_classifier.py --model_dir=/tmp/tfdist/text_mwms

The sentences are generated (no download): a sentence is positive when it holds the word
"great"; words are hashed to ids in the data function.
"""

import tfdist  # first: makes tf.keras the tf_keras that tfdist trains with

import numpy as np
import tensorflow as tf
from absl import app, flags

_MODEL_DIR = flags.DEFINE_string("model_dir", "/tmp/tfdist/text", "Where outputs go.")
_EPOCHS = flags.DEFINE_integer("epochs", 8, "Epochs to train.")
WORDS = ["the", "film", "was", "great", "dull", "plot", "actors", "long", "fine", "music", "a"]
VOCABULARY = 1000  # hash buckets; 0 is padding


def sentences(split):
  """Unbatched (token ids of 3 to 14 words, class id) pairs."""
  rng = np.random.default_rng(0 if split == "train" else 1)
  texts = [" ".join(rng.choice(WORDS, size=rng.integers(3, 15)))
           for _ in range(4096 if split == "train" else 1024)]
  labels = np.array([int("great" in t.split()) for t in texts], dtype="int64")
  tokens = tf.strings.split(tf.constant(texts))  # ragged: one row per sentence
  ids = tf.strings.to_hash_bucket_fast(tokens, VOCABULARY - 1) + 1
  return tf.data.Dataset.from_tensor_slices((ids, labels))


def model(num_classes):
  """Uncompiled: the labels are class ids, so tfdist compiles it (Adam, cross-entropy)."""
  return tf.keras.Sequential([
      tf.keras.Input(shape=(None,), dtype="int64"),
      tf.keras.layers.Embedding(VOCABULARY, 16, mask_zero=True),
      tf.keras.layers.GlobalAveragePooling1D(),
      tf.keras.layers.Dense(16, activation="relu"),
      tf.keras.layers.Dense(num_classes)])


def main(argv):
  del argv
  metrics = tfdist.run({"data": {"global_batch_size": 64},
                        "train": {"model_dir": _MODEL_DIR.value, "epochs": _EPOCHS.value,
                                  "learning_rate": 0.01}},
                       model_fn=model, data_fn=sentences)
  if metrics and metrics["eval_accuracy"] is not None:  # the chief evaluates
    print(f"eval_accuracy {metrics['eval_accuracy']:.4f}; outputs in {_MODEL_DIR.value}")


if __name__ == "__main__":
  app.run(main)
