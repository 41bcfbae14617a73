"""Paired-image data: the TFRecord schema, folder pairing and the tf.data pipeline."""
