"""The shared argument checks, and that every geometry check is the same one."""

import pytest

from cdgan_tf import config as config_lib
from cdgan_tf.common import checks
from cdgan_tf.defenses import baselines
from cdgan_tf.defenses import cdgan as cdgan_lib
from cdgan_tf.defenses import registry


@pytest.mark.parametrize("size,scale", [(32, 1), (32, 2), (256, 4), (24, 8)])
def test_geometry_accepts_powers_of_two_that_divide(size, scale):
  assert checks.check_geometry(size, scale) == (size, scale)


@pytest.mark.parametrize("size,scale,message", [
    (32, 3, "scale=3 must be a power of 2"), (30, 4, "image_size=30 is not divisible by "
                                              "scale=4"),
    (32, 0, "scale=0 must be a power of 2"), (0, 2, "image_size=0 must be a positive"),
    (32, 2.0, "integer power of 2"), (32, True, "integer power of 2")])
def test_geometry_refuses_with_a_message_naming_the_value(size, scale, message):
  with pytest.raises(ValueError, match=message):
    checks.check_geometry(size, scale)


def test_geometry_uses_the_given_names_and_error_type():
  with pytest.raises(KeyError, match="--image_size=30 is not divisible by --scale=4"):
    checks.check_geometry(30, 4, KeyError, names=("--image_size", "--scale"))


@pytest.mark.parametrize("build", [
    lambda: config_lib.DataConfig(image_size=30, scale=4),
    lambda: baselines.make_baseline("resize", image_size=30, scale=4),
    lambda: cdgan_lib.CdganPurifier(None, None, image_size=30, scale=4, mode="chain"),
])
def test_config_baseline_and_purifier_share_the_check(build):
  with pytest.raises(ValueError, match="image_size=30 is not divisible by scale=4"):
    build()


def test_defense_names_and_modes_are_one_map():
  assert registry.CDGAN_NAMES == ("cdgan", "sub_only", "super_only")
  assert {registry.MODE_OF[n] for n in registry.CDGAN_NAMES} == set(cdgan_lib.MODES)
  for name, mode in registry.MODE_OF.items():
    assert cdgan_lib.MODE_NAMES[mode] == name
