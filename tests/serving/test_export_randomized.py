"""A randomized CD-GAN exported like the deterministic one: new draws per call, seeded."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf.defenses import cdgan
from cdgan_tf.defenses import randomized
from cdgan_tf.models import generators
from cdgan_tf.serving import saving


@pytest.mark.slow  # about 30 s: one SavedModel export and load
def test_randomized_purifier_round_trip(tmp_path):
  keras.utils.set_random_seed(0)
  chain = cdgan.CdganPurifier(
      generators.build_sub_generator(scale=2, num_res_blocks=1, filters=8),
      generators.build_super_generator(scale=2, num_res_blocks=1, filters=8),
      image_size=16, scale=2)
  make = lambda: randomized.RandomizedPurifier(chain, noise=0.1, seed=5,  # noqa: E731
                                               name="cdgan")
  path = saving.export_purifier(make(), str(tmp_path / "purifier"))
  loaded = saving.ExportedPurifier(path)
  assert (loaded.image_size, loaded.scale) == (16, 2)
  images = np.random.default_rng(1).random((3, 16, 16, 3)).astype("float32")
  reference = make()  # same seed: the same sequence of draws
  first, second = loaded(images).numpy(), loaded(images).numpy()
  np.testing.assert_allclose(first, reference(images).numpy(), atol=1e-5)
  np.testing.assert_allclose(second, reference(images).numpy(), atol=1e-5)
  assert np.abs(first - second).max() > 1e-3  # a new draw at every call
  assert np.abs(first - chain(images).numpy()).max() > 1e-3  # not the plain chain
  assert int(tf.saved_model.load(path).purifier.calls.numpy()) == 0  # saved before use
