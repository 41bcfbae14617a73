"""The defended classifier (and the purifier alone) as SavedModels with signatures.

`DefendedModule` holds both generators, the resizes and a TensorFlow classifier (a
TF-Hub module, SavedModel or Keras model) in one `tf.Module`, saved with:

  serving_default   images: float32 [N, H, W, 3] in [0, 1], any H and W
  serving_bytes     image_bytes: tf.string [N], encoded JPEG / PNG (as TF Serving
                    clients send them); each is decoded and resized to the purifier's
                    input size, so the images may differ in size

both returning {"logits": float32 [N, 1000], "probabilities": float32 [N, 1000],
"classes": int64 [N]} with class indices in the ILSVRC 0..999 order (a 1001-way
model's background logit is dropped inside, as in its adapter).

`PurifierModule` saves the purifier alone (images in, purified images out) with the
same two input forms and the output {"purified": float32 [N, S, S, 3] in [0, 1]}, and
its working size and scale as variables (`defenses.exported.ExportedPurifier` reads it).

Bad input fails with an error that says what is wrong: a wrong rank, channel count or
dtype is refused by the signature itself; NaN / infinite pixels, values outside [0, 1]
and bytes that are not an image (named by their index in the batch) raise
InvalidArgumentError with a message naming the problem. An encoded image of more than
`max_pixels` decoded pixels (default `image_files.MAX_PIXELS`, stored in the SavedModel
as the variable `max_pixels`) is refused from its header, before it is decoded or any
memory is allocated for it, with a message naming its index and size. An empty batch (N = 0) returns
empty outputs.
"""

from __future__ import annotations

import tensorflow as tf

from cdgan_tf import image_ops
from cdgan_tf.common import errors
from cdgan_tf.data import image_files
from cdgan_tf.defenses import base
from cdgan_tf.defenses import cdgan as cdgan_lib
from cdgan_tf.defenses import randomized

IMAGES_SPEC = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
BYTES_SPEC = tf.TensorSpec([None], tf.string, name="image_bytes")


def _backing_variables(*objects) -> list:
  """The tf.Variables behind Keras 3 variables of the given models.

  Keras 3 variables wrap a tf.Variable; tracking only the wrapper leaves the
  SavedModel readable by `tf.saved_model.load` but not by TF1-style loaders
  (`saved_model_cli run`, TensorFlow Serving's C++ loader), which then fail with
  "Could not find variable ..." (keras-team/keras#20095). Tracking the backing
  variables themselves, as keras.export.ExportArchive does, fixes both.
  """
  variables = []
  for obj in objects:
    for variable in getattr(obj, "variables", None) or ():
      variables.append(getattr(variable, "value", variable)
                       if not isinstance(variable, tf.Variable) else variable)
  return variables


def _checked(images: tf.Tensor) -> tf.Tensor:
  """Asserts images are [N, H, W, 3] with pixels in [0, 1].

  A loaded SavedModel's signature does not enforce the shape it was traced with, so
  rank and channels are checked at run time, before any op could fail obscurely; a
  common client mistake, 0..255 pixels, gets its own message.
  """
  # ensure_shape is a data dependency of everything after it, so it fails first with
  # "Shape of tensor images [16,16,3] is not compatible with expected shape [?,?,?,3]".
  images = tf.ensure_shape(images, [None, None, None, 3], name="images")
  with tf.control_dependencies([tf.debugging.assert_all_finite(
      images, message="images must be float32 in [0, 1]; got NaN or infinite values")]):
    images = tf.identity(images)
  with tf.control_dependencies([
      tf.debugging.assert_greater_equal(
          tf.reduce_min(images), 0.0,
          message="images must be float32 in [0, 1]; got negative values"),
      tf.debugging.assert_less_equal(
          tf.reduce_max(images), 1.0,
          message="images must be float32 in [0, 1]; got values > 1 (0..255 pixels?)")]):
    return tf.identity(images)


_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM")


def _check_encoded(image_bytes: tf.Tensor) -> tf.Tensor:
  """Asserts a 1-D batch of JPEG / PNG / GIF / BMP bytes; a bad element is named by index.

  Decoding a batch fails as a whole; checking each element's signature first turns "one
  of them is not an image" into "image_bytes[3] is not a JPEG, PNG, GIF or BMP image".
  """
  image_bytes = tf.ensure_shape(image_bytes, [None], name="image_bytes")
  heads = [tf.strings.substr(image_bytes, 0, len(s)) for s in _SIGNATURES]
  known = tf.reduce_any(tf.stack([tf.equal(h, s) for h, s in zip(heads, _SIGNATURES)]),
                        axis=0)
  unknown = tf.cast(tf.where(tf.logical_not(known))[:, 0], tf.int32)
  first = tf.concat([unknown, [-1]], axis=0)[0]
  message = tf.strings.format(
      "image_bytes[{}] is not a JPEG, PNG, GIF or BMP image ({} such element(s) in the "
      "batch)", (first, tf.size(unknown)))
  with tf.control_dependencies([tf.debugging.Assert(tf.equal(tf.size(unknown), 0),
                                                    [message])]):
    return tf.identity(image_bytes)


def _header_size(encoded: tf.Tensor) -> tf.Tensor:
  """int64 [2] (width, height) of one JPEG / PNG / GIF / BMP, read from its header only."""
  padded = tf.strings.join([encoded, tf.constant(b"\0" * 32)])

  def field(offset, length, big_endian):
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, offset, length), tf.uint8),
                  tf.int64)
    weights = 256 ** tf.range(length, dtype=tf.int64)
    return tf.reduce_sum(raw * (tf.reverse(weights, [0]) if big_endian else weights))

  def jpeg():
    shape = tf.cast(tf.io.extract_jpeg_shape(encoded), tf.int64)
    return tf.stack([shape[1], shape[0]])

  def bmp():  # Signed 32-bit; a negative height means top-down rows.
    width, height = field(18, 4, False), field(22, 4, False)
    return tf.stack([width, tf.where(height >= 2 ** 31, 2 ** 32 - height, height)])

  head = tf.strings.substr(padded, 0, 4)
  return tf.case(
      [(tf.equal(head, b"\x89PNG"), lambda: tf.stack([field(16, 4, True),
                                                      field(20, 4, True)])),
       (tf.equal(tf.strings.substr(head, 0, 3), b"GIF"),
        lambda: tf.stack([field(6, 2, False), field(8, 2, False)])),
       (tf.equal(tf.strings.substr(head, 0, 2), b"BM"), bmp)], default=jpeg)


def _check_pixels(image_bytes: tf.Tensor, max_pixels: tf.Tensor) -> tf.Tensor:
  """Asserts each image has at most `max_pixels` decoded pixels; names the first one over."""
  sizes = tf.map_fn(_header_size, image_bytes,
                    fn_output_signature=tf.TensorSpec([2], tf.int64))
  sizes = tf.reshape(sizes, [-1, 2])
  pixels = sizes[:, 0] * sizes[:, 1]
  over = tf.cast(tf.where(pixels > max_pixels)[:, 0], tf.int32)

  def message():
    first = over[0]
    return tf.strings.format(
        "image_bytes[{}] is {}x{} = {} decoded pixels, over the limit of {} of this "
        "model (max_pixels); downscale it before sending",
        (first, sizes[first, 0], sizes[first, 1], pixels[first], max_pixels))

  with tf.control_dependencies([tf.debugging.Assert(
      tf.equal(tf.size(over), 0), [tf.cond(tf.size(over) > 0, message,
                                           lambda: tf.constant(""))])]):
    return tf.identity(image_bytes)


def _decode_batch(image_bytes: tf.Tensor, size: int,
                  max_pixels: tf.Tensor = None) -> tf.Tensor:
  """tf.string [N] of JPEG/PNG/GIF/BMP -> float32 [N, size, size, 3] in [0, 1].

  With `max_pixels` (int64 scalar), larger images are refused before decoding."""
  image_bytes = _check_encoded(image_bytes)
  if max_pixels is not None:
    image_bytes = _check_pixels(image_bytes, max_pixels)

  def decode_one(encoded):
    image = image_ops.decode_image(encoded)
    return image_ops.resize(image, size)

  return tf.map_fn(decode_one, image_bytes,
                   fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))


def _unless_empty(images: tf.Tensor, fn, empty: tf.Tensor) -> tf.Tensor:
  """fn(images), or `empty` for a batch of 0 images (the models need at least one)."""
  return tf.cond(tf.shape(images)[0] > 0, lambda: fn(images), lambda: empty)


def _max_pixels_variable(max_pixels: int) -> tf.Variable:
  if max_pixels < 0:
    raise errors.UsageError(f"max_pixels must be >= 0 (0: no limit), got {max_pixels}")
  return tf.Variable(int(max_pixels) or 2 ** 62, trainable=False, dtype=tf.int64,
                     name="max_pixels")


def _batched(fn, batch_size):
  """fn over chunks of `batch_size` images (`defenses.base.in_batches`); 0: whole."""
  if not batch_size:
    return fn
  return lambda images: base.in_batches(fn, images, batch_size)


def _serving_batch_size(batch_size):
  """None -> `base.cpu_batch_size()` now (CPU_BATCH_SIZE without a GPU / TPU, else 0)."""
  if batch_size is None:
    return base.cpu_batch_size()
  if batch_size < 0:
    raise errors.UsageError(f"batch_size={batch_size} must be >= 0 (0: whole batches)")
  return int(batch_size)


def _chain(purifier) -> cdgan_lib.CdganPurifier:
  """The CdganPurifier itself, or the one a `RandomizedPurifier` wraps."""
  return purifier.purifier if randomized.is_randomized(purifier) else purifier


def _check_cdgan(purifier):
  """The purifier to export: a CdganPurifier, or a randomized one around it.

  A randomized purifier is exported with its seed and call counter as variables, so
  the served model draws a new transformation at every call, as in evaluation.
  """
  if not isinstance(_chain(purifier), cdgan_lib.CdganPurifier):
    raise errors.UsageError(f"only the CD-GAN purifier (generators) can be exported, not "
                            f"{purifier!r}")
  return purifier


class PurifierModule(tf.Module):
  """The purifier alone, for export.

  Args:
    purifier: A `defenses.CdganPurifier` (a tf.Module holding the generators), or a
      `defenses.randomized.RandomizedPurifier` around one.
    max_pixels: Largest decoded image the bytes signature accepts (0: no limit).
    batch_size: Images per purifier call inside the signatures (0: the whole request
      in one call). None: `defenses.base.cpu_batch_size()` when the module is made,
      i.e. chunks of CPU_BATCH_SIZE when no GPU / TPU is visible (the export then
      keeps them, also when served on a GPU; pass 0 to export for accelerators).
  """

  def __init__(self, purifier: cdgan_lib.CdganPurifier,
               max_pixels: int = image_files.MAX_PIXELS, batch_size=None):
    super().__init__(name="purifier_module")
    self.max_pixels = _max_pixels_variable(max_pixels)
    self.purifier = _check_cdgan(purifier)
    self.batch_size = _serving_batch_size(batch_size)
    self.image_size = tf.Variable(purifier.image_size, trainable=False, name="image_size")
    self.scale = tf.Variable(purifier.scale, trainable=False, name="scale")
    self.backing_variables = _backing_variables(_chain(purifier).sub_generator,
                                                _chain(purifier).super_generator)

  def _outputs(self, images):
    size = self.purifier.image_size
    return {"purified": _unless_empty(
        images, _batched(self.purifier, self.batch_size),
        tf.zeros([0, size, size, 3], tf.float32))}

  @tf.function(input_signature=[IMAGES_SPEC])
  def serve_images(self, images):
    return self._outputs(_checked(images))

  @tf.function(input_signature=[BYTES_SPEC])
  def serve_bytes(self, image_bytes):
    return self._outputs(_decode_batch(image_bytes, self.purifier.image_size,
                                       self.max_pixels))


class DefendedModule(tf.Module):
  """Purifier + classifier as one module.

  Args:
    classifier: A differentiable or forward-only TF classifier adapter from
      `cdgan_tf.classifiers` whose `trackable` attribute holds the underlying TF
      object (Keras model or loaded SavedModel); TFLite adapters cannot be exported.
    purifier: A `defenses.CdganPurifier`, or None to export the undefended classifier.
    max_pixels: Largest decoded image the bytes signature accepts (0: no limit).
    batch_size: Images per purifier call, as in `PurifierModule` (None: the CPU
      batch size when no accelerator is visible; 0: whole requests).
  """

  def __init__(self, classifier, purifier=None, max_pixels: int = image_files.MAX_PIXELS,
               batch_size=None):
    super().__init__(name="defended_classifier")
    self.max_pixels = _max_pixels_variable(max_pixels)
    self.batch_size = _serving_batch_size(batch_size)
    trackable = classifier.trackable
    if trackable is None:
      raise errors.UsageError(f"classifier {classifier.name} has no TensorFlow model to export "
                              "(TFLite models cannot be put inside a SavedModel; use a TF-Hub "
                              "handle, SavedModel directory or Keras file)")
    self.classifier_model = trackable
    self._classifier = classifier
    self.purifier = _check_cdgan(purifier) if purifier is not None else None
    parts = [trackable] + ([_chain(purifier).sub_generator, _chain(purifier).super_generator]
                           if purifier is not None else [])
    self.backing_variables = _backing_variables(*parts)
    self._bytes_size = purifier.image_size if purifier is not None else max(
        classifier.input_size)

  def logits(self, images: tf.Tensor) -> tf.Tensor:
    """float32 [N, H, W, 3] in [0, 1] -> logits [N, num_classes] through the defense."""
    if self.purifier is not None:
      images = _batched(self.purifier, self.batch_size)(images)
    return self._classifier(images)

  def _outputs(self, images):
    logits = _unless_empty(images, self.logits,
                           tf.zeros([0, self._classifier.num_classes], tf.float32))
    return {"logits": logits, "probabilities": tf.nn.softmax(logits),
            "classes": tf.argmax(logits, axis=-1, output_type=tf.int64)}

  @tf.function(input_signature=[IMAGES_SPEC])
  def serve_images(self, images):
    return self._outputs(_checked(images))

  @tf.function(input_signature=[BYTES_SPEC])
  def serve_bytes(self, image_bytes):
    return self._outputs(_decode_batch(image_bytes, self._bytes_size, self.max_pixels))
