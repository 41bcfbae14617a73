"""The project's usage-error type."""

import pytest
import tensorflow as tf

from cdgan_tf.common import errors


def test_a_usage_error_raised_while_tracing_stays_a_usage_error():
  """Autograph re-raises it as itself (not a StagingError), so cli.run prints one line."""
  @tf.function
  def traced(x):
    if x.shape[0] is None:
      raise errors.UsageError("--batch_size: a static batch is needed")
    return x

  with pytest.raises(errors.UsageError, match="a static batch is needed"):
    traced.get_concrete_function(tf.TensorSpec([None], tf.float32))
  assert issubclass(errors.UsageError, ValueError)
