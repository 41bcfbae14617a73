"""`PurifierLayer`: a purifier as a Keras 3 layer, in front of any Keras classifier.

  classifier = keras.models.load_model("my_classifier.keras")
  defended = keras.Sequential([cdgan_tf.PurifierLayer("imagenet-128", output_size=224),
                               classifier])
  defended.save("defended.keras")
  # later, elsewhere: import cdgan_tf; keras.models.load_model("defended.keras")

A CD-GAN purifier's two generators become sub-layers: `model.save` writes their
weights into the `.keras` file, which then loads without the original files after
`import cdgan_tf` (it registers the layer with Keras when Keras loads,
`integrations.registration`; Keras does not import a custom layer's module itself). An
exported purifier SavedModel cannot be embedded; the layer records its path and loads
it again from there.

Gradients flow through the layer (the generators are differentiable), so a white-box
attack on the defended model attacks the whole chain.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import keras
import tensorflow as tf

from cdgan_tf.common import errors

# Only Keras, TensorFlow and common.errors at the top: `integrations.registration` may
# import this module from inside the first `import keras` of any cdgan_tf module, so the
# rest of the library is imported when a layer is built or called.

Size = Optional[Union[int, Sequence[int]]]


def _size_pair(size: Size):
  if size is None:
    return None
  pair = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(
      int(s) for s in size)
  if len(pair) != 2 or min(pair) < 1:
    raise errors.UsageError(f"output_size must be a positive int or (height, width), got {size!r}")
  return pair


@keras.saving.register_keras_serializable(package="cdgan_tf")
class PurifierLayer(keras.layers.Layer):
  """A purifier as a Keras layer: images -> purified images.

  Args:
    purifier: A `Purifier` (`cdgan_tf.load_purifier(...)`), or what `load_purifier`
      takes (a preset name such as "imagenet-128", or a path). A CD-GAN purifier must
      run in float32 without XLA (the layer's own options; its generators are saved in
      the model file); any other purifier must be given by path to be saveable.
    output_size: Resize the purified images to this side (int) or (height, width),
      e.g. the classifier's input size; default: the purifier's working size.
    **kwargs: Keras layer arguments (name, ...).

  Call:
    images float32 [N, H, W, 3] in [0, 1], any H and W -> float32
    [N, h, w, 3] in [0, 1], (h, w) = output_size or the purifier's working size.
  """

  def __init__(self, purifier, output_size: Size = None,
               sub_generator=None, super_generator=None, image_size: Optional[int] = None,
               scale: Optional[int] = None, mode: str = "chain", **kwargs):
    # pylint: disable=import-outside-toplevel
    from cdgan_tf.defenses import base
    from cdgan_tf.defenses import cdgan as cdgan_lib
    super().__init__(**kwargs)
    self._source = None
    if isinstance(purifier, dict):  # from_config of an embedded CD-GAN
      purifier = None
    elif not isinstance(purifier, base.Purifier):
      from cdgan_tf import pretrained  # pylint: disable=import-outside-toplevel
      self._source = str(purifier)
      purifier = pretrained.load_purifier(self._source)
    if isinstance(purifier, cdgan_lib.CdganPurifier):
      if purifier.compute_dtype != "float32" or purifier.jit_compile:
        raise errors.UsageError("PurifierLayer runs CD-GAN in float32 without XLA; load the "
                                "purifier with the default compute_dtype and jit_compile")
      sub_generator, super_generator = purifier.trained_generators
      image_size, scale, mode = purifier.image_size, purifier.scale, purifier.mode
      self._source = None  # Embedded: the file does not need the source any more.
    if purifier is None or isinstance(purifier, cdgan_lib.CdganPurifier):
      # Sub-layers: their weights are saved with the model.
      self.sub_generator = sub_generator
      self.super_generator = super_generator
      self._embedded = {"image_size": int(image_size), "scale": int(scale), "mode": mode}
      purifier = cdgan_lib.CdganPurifier(sub_generator, super_generator, **self._embedded)
    else:
      self._embedded = None
    self._purifier = [purifier]  # In a list: Keras does not track the tf.Module itself.
    self.output_size = _size_pair(output_size)

  @property
  def purifier(self):
    """The `defenses.base.Purifier` the layer runs."""
    return self._purifier[0]

  def _working_size(self):
    size = getattr(self.purifier, "image_size", None)
    return (int(size), int(size)) if size else None

  def call(self, images):
    from cdgan_tf import image_ops  # pylint: disable=import-outside-toplevel
    purified = self.purifier(tf.cast(images, tf.float32))
    if self.output_size is not None:
      purified = image_ops.resize(purified, self.output_size)
    return purified

  def compute_output_shape(self, input_shape):
    size = self.output_size or self._working_size() or (None, None)
    return (input_shape[0], size[0], size[1], 3)

  def get_config(self):
    config = super().get_config()
    config["output_size"] = list(self.output_size) if self.output_size else None
    if self._embedded is not None:
      config.update(self._embedded)
      config["purifier"] = {"embedded": "cdgan"}
      for key in ("sub_generator", "super_generator"):
        model = getattr(self, key)
        config[key] = None if model is None else keras.saving.serialize_keras_object(model)
    elif self._source is not None:
      config["purifier"] = self._source
    else:
      raise errors.UsageError(f"PurifierLayer cannot save {self.purifier!r}: give it as a path "
                              "(or a preset name) instead of an object")
    return config

  @classmethod
  def from_config(cls, config):
    # cdgan_tf.models registers the generators' custom layers before they deserialize.
    from cdgan_tf import models  # pylint: disable=import-outside-toplevel,unused-import
    config = dict(config)
    for key in ("sub_generator", "super_generator"):
      if config.get(key) is not None:
        config[key] = keras.saving.deserialize_keras_object(config[key])
    return cls(**config)
