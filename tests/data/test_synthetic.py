"""The one synthetic-data helper of tests and benchmarks."""

import numpy as np
import tensorflow as tf

from cdgan_tf.data import features
from cdgan_tf.data import synthetic


def test_noise_pairs_are_seeded_and_a_longer_run_extends_a_shorter_one():
  adversarial, clean = synthetic.noise_pairs(8, 3, seed=5)
  more_adversarial, more_clean = synthetic.noise_pairs(8, 4, seed=5)
  assert adversarial.shape == clean.shape == (3, 8, 8, 3) and clean.dtype == np.uint8
  np.testing.assert_array_equal(clean, more_clean[:3])
  np.testing.assert_array_equal(adversarial, more_adversarial[:3])
  diff = adversarial.astype(int) - clean.astype(int)
  assert 5 < diff.std() < 11  # N(0, 8) grey levels, clipped at 0 and 255.


def test_records_are_sharded_in_order_and_read_back_exactly(tmp_path):
  pairs = synthetic.noise_pairs(8, 6, seed=1)
  pattern = synthetic.write_records(str(tmp_path), "train", pairs, shards=2)
  assert pattern == str(tmp_path / "train-*")
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
  read = [features.parse_example(r) for r in tf.data.TFRecordDataset(
      sorted(tf.io.gfile.glob(pattern)))]
  assert [r["file_name"].numpy().decode() for r in read] == [f"train_{i}" for i in range(6)]
  assert [int(r["label"]) for r in read] == [0, 1, 2, 3, 4, 5]
  for i, r in enumerate(read):  # PNG is lossless: the pixels come back exactly.
    np.testing.assert_allclose(r["clean"].numpy(), pairs[1][i] / 255.0, atol=1e-6)
    np.testing.assert_allclose(r["adversarial"].numpy(), pairs[0][i] / 255.0, atol=1e-6)
