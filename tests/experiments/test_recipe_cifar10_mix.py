"""The cifar10_mix_warm recipe: warm starts from the shipped generators, chooses on the
validation split, and every train flag it passes is one train_sub.py / train_super.py
define."""

from absl import flags

from cdgan_tf import flags as cdgan_flags
from experiments import recipes as recipes_lib


def _recipe(*overrides):
  return recipes_lib.get_recipe("cifar10_mix_warm", "/w", overrides)


def test_gans_warm_start_from_the_shipped_generators_and_chain():
  recipe = _recipe()
  (sub,), (sup,) = recipe.stages["sub"], recipe.stages["super"]
  assert sub.program == "train_sub.py" and sup.program == "train_super.py"
  assert sub.flags["init_generator"] == "weights/cifar10/cdgan/sub"
  assert sup.flags["init_generator"] == "weights/cifar10/cdgan/super"
  assert sup.flags["sub_model"] == sub.flags["model_dir"] == "/w/runs/warm/sub"
  assert sub.flags["train_records"] == "/w/cifar10/records/train-*"
  assert sub.flags["feature_extractor"] == "weights/cifar10/densenet_feature.keras"
  assert "clean_pair_fraction" not in sub.flags  # 0: the mix's own clean share only
  assert _recipe("clean_fraction=0.25").stages["sub"][0].flags["clean_pair_fraction"] == 0.25


def test_candidates_are_chosen_on_the_validation_split_only():
  recipe = _recipe("tag=_b")
  for stage in ("val_sub", "val", "val_shipped"):
    (job,) = recipe.stages[stage]
    assert job.flags["dataset"] == "cifar10_val", stage
  assert recipe.stages["val_sub"][0].flags["super_model"] == "weights/cifar10/cdgan/super"
  assert recipe.stages["val"][0].flags["sub_model"] == "/w/runs/warm_b/sub"
  assert "test" not in recipe.default_stages and "ship" not in recipe.default_stages
  assert recipe.stages["test"][0].flags["dataset"] == "cifar10"


def test_train_flags_exist_in_the_train_scripts():
  values = flags.FlagValues()
  cdgan_flags.define_training_flags(values)
  for stage in ("sub", "super"):
    job = _recipe().stages[stage][0]
    unknown = set(job.flags) - set(values) - {"sub_model"}
    assert not unknown, unknown


def test_transfer_variants_train_on_both_record_sets_at_their_scale():
  """The _transfer recipes add the shipped recipe's MI-FGSM pairs (built by its own
  `attack` / `records` jobs, the same jobs and hashes as the cifar10 recipes) to the
  mix; scale 1 starts from random weights (the shipped generators are scale 2)."""
  from experiments.recipes import cifar10  # pylint: disable=import-outside-toplevel
  for name, scale, warm in (("cifar10_mix_transfer_warm", 2, True),
                            ("cifar10_mix_transfer_scratch", 2, False),
                            ("cifar10_mix_transfer_s1", 1, False)):
    recipe = recipes_lib.get_recipe(name, "/w", ["transfer_work=/t"])
    assert recipe.default_stages[:3] == ("mix", "transfer", "sub"), name
    for role in ("sub", "super"):
      job = recipe.stages[role][0]
      assert job.flags["train_records"] == "/w/cifar10/records/train-*,/t/records/train-*"
      assert job.flags["val_records"] == "/w/cifar10/records/val-*"
      assert job.flags["scale"] == scale
      assert ("init_generator" in job.flags) == warm, (name, role)
    shared = cifar10.shared_stages(cifar10.Settings(), "/t")
    assert [j.name for j in recipe.stages["transfer"]] == ["attack/adv_train", "records"]
    assert recipe.stages["transfer"][0] == shared["attack"][0]
    assert recipe.stages["transfer"][1] == shared["records"][0]
  try:
    recipes_lib.get_recipe("cifar10_mix_warm", "/w", ["scale=1"])
  except Exception as e:  # pylint: disable=broad-except
    assert "scale 2" in str(e)
  else:
    raise AssertionError("warm start at scale 1 was not refused")
