"""The imagenet_mix_warm recipe: warm starts from the shipped 256 -> 128 -> 256 pair,
packs its validation images out of the training records, chooses on held-out attacks,
and every flag it passes exists in the program it runs."""

import pytest
from absl import flags

from cdgan_tf import flags as cdgan_flags
from experiments import recipes as recipes_lib
from experiments.generalization import rows
from experiments.runner import RecipeError


def _recipe(*overrides):
  return recipes_lib.get_recipe("imagenet_mix_warm", "/w", overrides)


def test_gans_warm_start_from_the_shipped_scale2_pair_and_chain():
  recipe = _recipe()
  (sub,), (sup,) = recipe.stages["sub"], recipe.stages["super"]
  assert sub.flags["init_generator"] == "weights/imagenet/cdgan_scale2/sub"
  assert sup.flags["init_generator"] == "weights/imagenet/cdgan_scale2/super"
  assert sup.flags["sub_model"] == sub.flags["model_dir"] == "/w/runs/imagenet_warm/sub"
  for job in (sub, sup):
    assert (job.flags["image_size"], job.flags["scale"], job.flags["filters"]) == (256, 2, 32)
    assert job.flags["train_records"] == "/w/imagenet/records/train-*"
    assert job.flags["feature_extractor"].endswith("embedding_extractor.tflite")
  values = flags.FlagValues()
  cdgan_flags.define_training_flags(values)
  assert not set(sub.flags) - set(values)
  assert not set(sup.flags) - set(values) - {"sub_model"}


def test_validation_images_are_packed_out_of_training_and_chosen_on():
  recipe = _recipe()
  (mix,) = recipe.stages["mix"]
  assert mix.flags["val_fraction"] == rows.IMAGENET_VAL_FRACTION
  assert rows.DATASETS["imagenet_val"]["mix_val"] == ("imagenet", "val",
                                                      rows.IMAGENET_VAL_FRACTION)
  for stage in ("val", "val_shipped", "test", "test_shipped"):
    # Every purifier of a recipe is scored on the same (per-batch seeded) attacked PNGs.
    assert recipe.stages[stage][0].flags["seeding"] == "batch"
  for stage in ("val", "val_shipped"):
    assert recipe.stages[stage][0].flags["dataset"] == "imagenet_val"
  assert "test" not in recipe.default_stages and "ship" not in recipe.default_stages
  (test,) = recipe.stages["test"]
  assert test.flags["dataset"] == "imagenet" and test.flags["max_images"] == 100
  names = {r.name for r in rows.IMAGENET_ROWS}
  assert set(test.flags["rows"]) <= names
  held_out = [r for r in rows.IMAGENET_ROWS if r.name in test.flags["rows"] and r.held_out]
  assert len(held_out) == 5


def test_transfer_variant_adds_the_class_samples_pairs_of_the_shipped_recipe():
  """The pairs are the shipped pair's own attack (imagenet_transfer's adv_class job, the
  same settings and so the same bytes) on the class samples only: the val-sample images
  of the validation table never enter training."""
  from experiments.recipes import imagenet  # pylint: disable=import-outside-toplevel
  recipe = recipes_lib.get_recipe("imagenet_mix_transfer_warm", "/w")
  assert recipe.default_stages[:3] == ("mix", "transfer", "sub")
  attack, records = recipe.stages["transfer"]
  shipped = imagenet.transfer_recipe(imagenet.Settings(), "/i").stages["attack"][1]
  same = {k: v for k, v in shipped.flags.items() if k != "output_dir"}
  assert {k: v for k, v in attack.flags.items() if k != "output_dir"} == same
  assert attack.flags["clean_dir"].endswith("imagenet_class_samples")
  assert records.flags["adversarial_dir"] == attack.flags["output_dir"]
  for role in ("sub", "super"):
    job = recipe.stages[role][0]
    assert job.flags["train_records"] == (
        "/w/imagenet/records/train-*,/w/imagenet_transfer/records_class/train-*")
    assert job.flags["val_records"] == "/w/imagenet/records/val-*"
    assert job.flags["model_dir"] == f"/w/runs/imagenet_warm_transfer/{role}"


def test_scale1_variant_trains_two_denoisers_from_random_weights():
  """Scale 1 (issue 18 item 3): both generators 256 -> 256, no warm start (the shipped
  ones are scale 2), same data as the transfer variant, shipped to its own folder."""
  recipe = recipes_lib.get_recipe("imagenet_mix_transfer_s1", "/w")
  assert recipe.default_stages[:3] == ("mix", "transfer", "sub")
  sub, sup = recipe.stages["sub"][0], recipe.stages["super"][0]
  for role, job in (("sub", sub), ("super", sup)):
    assert (job.flags["image_size"], job.flags["scale"]) == (256, 1)
    assert "init_generator" not in job.flags
    assert job.flags["model_dir"] == f"/w/runs/imagenet_scratch_s1_transfer/{role}"
    assert job.flags["train_records"].endswith("/w/imagenet_transfer/records_class/train-*")
  assert sup.flags["sub_model"] == sub.flags["model_dir"]
  assert recipe.stages["ship"][0].flags["destination"] == "weights/imagenet/cdgan_scale1"
  assert _recipe().stages["ship"][0].flags["destination"] == "weights/imagenet/cdgan_mix"
  assert recipe.stages["val"][0].flags["sub_model"] == sub.flags["model_dir"]


def test_warm_start_needs_the_shipped_scale():
  with pytest.raises(RecipeError, match=r"warm=True needs a scale with shipped generators "
                     r"\(\[2, 4\]\), not 1"):
    _recipe("scale=1")


def test_scale4_variant_warm_starts_from_the_shipped_paper_geometry():
  recipe = recipes_lib.get_recipe("imagenet_mix_transfer40_warm_s4", "/w")
  for role in ("sub", "super"):
    job = recipe.stages[role][0]
    assert job.flags["init_generator"] == f"weights/imagenet/cdgan/{role}"
    assert (job.flags["scale"], job.flags["filters"], job.flags["num_res_blocks"]) == (4, 32, 8)
    assert job.flags["train_shares"] == (0.6, 0.4)
    assert job.flags["model_dir"] == f"/w/runs/imagenet_warm_s4_transfer40/{role}"
  assert recipe.stages["ship"][0].flags["destination"] == "weights/imagenet/cdgan_scale4"


def test_transfer40_variant_draws_two_fifths_from_the_transfer_pairs():
  """`transfer_share` becomes --train_shares in the order of --train_records' globs
  (mix first), and the training program parses it back to the same shares."""
  from cdgan_tf import config  # pylint: disable=import-outside-toplevel
  recipe = recipes_lib.get_recipe("imagenet_mix_transfer40_warm", "/w")
  for role in ("sub", "super"):
    job = recipe.stages[role][0]
    assert job.flags["train_shares"] == (0.6, 0.4)
    assert job.flags["model_dir"] == f"/w/runs/imagenet_warm_transfer40/{role}"
    data = config.DataConfig(train_pattern=job.flags["train_records"],
                             train_shares=job.flags["train_shares"])
    assert data.train_pattern.split(",")[1].startswith("/w/imagenet_transfer/")
    assert data.train_shares == (0.6, 0.4)
  values = flags.FlagValues()
  cdgan_flags.define_training_flags(values)
  values(["prog", "--train_shares=0.6,0.4", "--train_records=r", "--model_dir=m"])
  assert [float(v) for v in values.train_shares] == [0.6, 0.4]
  assert "train_shares" not in _recipe().stages["sub"][0].flags  # counts, as before
  with pytest.raises(RecipeError, match="needs with_transfer"):
    _recipe("transfer_share=0.4")
  with pytest.raises(RecipeError, match=r"must be in \[0, 1\)"):
    recipes_lib.get_recipe("imagenet_mix_transfer_warm", "/w", ["transfer_share=1.0"])
