"""Registers `PurifierLayer` with Keras when Keras loads, so `import cdgan_tf` suffices.

A `.keras` file that holds a `PurifierLayer` names it "cdgan_tf>PurifierLayer"; Keras
finds such a class only in its registry of custom objects (it imports a saved `module`
field for its own packages only), and the class registers itself when
`cdgan_tf.integrations.keras_layer` is imported. `import cdgan_tf` must not import
Keras or TensorFlow (entry scripts import `cdgan_tf.cli` first to quiet TensorFlow's
logs before it loads), so `install()`, called by `cdgan_tf/__init__.py`, imports the
layer's module right away only when Keras is loaded already, and otherwise right after
Keras's own import finishes, whoever imports it and in whichever order.

The layer's module imports nothing of cdgan_tf but `common.errors` at its top (the rest
when a layer is built), so importing it while a cdgan_tf module that imported Keras is
half-initialized cannot meet that module.

Pure Python: importing this module imports no TensorFlow.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import warnings

LAYER_MODULE = "cdgan_tf.integrations.keras_layer"


def _register() -> None:
  try:
    importlib.import_module(LAYER_MODULE)
  except Exception as e:  # pylint: disable=broad-except
    # Keras itself stays usable; only a saved PurifierLayer will not load.
    warnings.warn(f"cdgan_tf could not register PurifierLayer with Keras: {e!r}")


class _AfterKerasImport(importlib.abc.MetaPathFinder):
  """Finds nothing itself: wraps the ordinary spec of `keras` so `_register` runs once
  Keras's own module has executed, then leaves `sys.meta_path`.

  A spec that is only looked at (`importlib.util.find_spec("keras")`, as TensorFlow
  does to see whether Keras is installed) is never executed: the finder stays until one
  is.
  """

  def find_spec(self, name, path=None, target=None):
    if name != "keras":
      return None
    spec = None
    for finder in sys.meta_path:  # The ordinary finders.
      find = getattr(finder, "find_spec", None)
      if finder is not self and find is not None:
        spec = find(name, path, target)
        if spec is not None:
          break
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
      return spec
    loader = spec.loader

    def exec_module(module):
      try:
        type(loader).exec_module(loader, module)
      finally:
        del loader.exec_module  # The loader's own method again.
      uninstall()
      _register()

    loader.exec_module = exec_module
    return spec


_FINDER = _AfterKerasImport()


def install() -> None:
  """Registers the layer now if Keras is loaded, else when Keras loads (idempotent)."""
  if "keras" in sys.modules:
    _register()
  elif _FINDER not in sys.meta_path:
    sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
  """Stops waiting for Keras (the layer stays registered if it was)."""
  if _FINDER in sys.meta_path:
    sys.meta_path.remove(_FINDER)
