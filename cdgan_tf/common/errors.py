"""The project's own error type for a user's mistake (bad input, a bad value, a file
that is not what it should be).

`cli.run` prints a `UsageError` as one line and exits with code 2; any other exception,
a plain `ValueError` included, is a bug and keeps its traceback. `UsageError` is a
`ValueError`, so code that catches ValueError around a check still catches it.
"""


class UsageError(ValueError):
  """A usage or input error with a message fit for one line (name the flag or file)."""

  # Exception's own constructor (the message only): TensorFlow's autograph then
  # re-raises a UsageError raised while tracing a tf.function as a UsageError (it turns
  # exception types with other constructors into a StagingError).
  __init__ = Exception.__init__
