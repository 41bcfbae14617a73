"""One place that turns defense names into purifiers.

  cdgan                    the CD-GAN chain (from the two generators, or an exported
                           purifier SavedModel)
  sub_only, super_only     its ablations (need the generators)
  identity, resize, jpeg<q>, bits<k>, median<k>   the baselines (`baselines`)

The `resize` baseline runs CD-GAN's geometry without learning; its working size and scale
come from the CD-GAN being compared (generator.json or the exported purifier), else from
the caller (`evaluate.py --purifier_size/--purifier_scale`), else the paper's 256 / 4
(`config.DataConfig` defaults).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

from cdgan_tf import config as config_lib
from cdgan_tf.common import errors
from cdgan_tf.defenses import base
from cdgan_tf.defenses import baselines
from cdgan_tf.defenses import cdgan as cdgan_lib
from cdgan_tf.defenses import exported

# Defense name -> CdganPurifier mode: the inverse of the one map in `cdgan.MODE_NAMES`.
MODE_OF = {name: mode for mode, name in cdgan_lib.MODE_NAMES.items()}
CDGAN_NAMES = tuple(MODE_OF)


def load_cdgan(sub_model: str = "", super_model: str = "", purifier_dir: str = "",
               image_size: Optional[int] = None, compute_dtype: str = "float32",
               jit_compile: bool = False) -> base.Purifier:
  """The CD-GAN chain from its generators or from an exported purifier SavedModel.

  compute_dtype and jit_compile (`cdgan.CdganPurifier`) apply to the generators only.
  """
  if sub_model or super_model:
    return cdgan_lib.CdganPurifier.from_files(sub_model, super_model, image_size=image_size,
                                              compute_dtype=compute_dtype,
                                              jit_compile=jit_compile)
  if purifier_dir:
    if compute_dtype != "float32" or jit_compile:
      raise errors.UsageError("compute_dtype and jit_compile apply to --sub_model/--super_model, "
                              "not to an exported purifier (--purifier)")
    return exported.ExportedPurifier(purifier_dir)
  raise errors.UsageError("CD-GAN needs --sub_model and --super_model (or --purifier)")


def build_defenses(names: Sequence[str], sub_model: str = "", super_model: str = "",
                   purifier_dir: str = "", image_size: Optional[int] = None,
                   scale: Optional[int] = None, compute_dtype: str = "float32",
                   jit_compile: bool = False) -> Dict[str, base.Purifier]:
  """Builds the named defenses, in the order given.

  Args:
    names: Any of CDGAN_NAMES and the baseline names (`baselines.make_baseline`).
    sub_model: The sub generator (.keras file, export folder or training model_dir).
    super_model: The super generator.
    purifier_dir: An exported purifier SavedModel, used for "cdgan" instead of the
      two generators.
    image_size: The purifier's working size; default: the one recorded with the
      generators. Also the `resize` baseline's.
    scale: The `resize` baseline's scale when no CD-GAN gives it.
    compute_dtype: The generators' arithmetic: "float32", "bfloat16" or "float16".
    jit_compile: Compile the generators with XLA.

  Returns:
    name -> Purifier.

  Raises:
    ValueError: an unknown name, or CD-GAN defenses without generators.
  """
  names = list(names)
  geometry = config_lib.DataConfig()
  for name in names:  # Checked before loading anything: a typo fails in a moment.
    if name not in CDGAN_NAMES and not baselines.is_baseline_name(name):
      raise errors.UsageError(f"unknown defense {name!r}; valid: {', '.join(CDGAN_NAMES)}, "
                              f"{', '.join(baselines.VALID_FORMS)}")
  cdgan = None
  if any(n in CDGAN_NAMES for n in names):
    cdgan = load_cdgan(sub_model, super_model, purifier_dir, image_size, compute_dtype,
                       jit_compile)
  size = cdgan.image_size if cdgan is not None else (image_size or geometry.image_size)
  scale = cdgan.scale if cdgan is not None else (scale or geometry.scale)
  defenses: Dict[str, base.Purifier] = {}
  for name in names:
    if name == "cdgan":
      defenses[name] = cdgan
    elif name in CDGAN_NAMES:
      if not isinstance(cdgan, cdgan_lib.CdganPurifier):
        raise errors.UsageError(f"defense {name} needs --sub_model/--super_model (not --purifier)")
      defenses[name] = cdgan.with_mode(MODE_OF[name])
    else:
      defenses[name] = baselines.make_baseline(name, image_size=size, scale=scale)
  return defenses
