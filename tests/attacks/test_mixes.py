"""Attack-mix declarations (cdgan_tf/attacks/mixes.py): draws, checks, roles."""

import collections

import pytest

from cdgan_tf.attacks import mix_set
from cdgan_tf.attacks import mixes
from cdgan_tf.data import folders

SURROGATE = (("s.keras",),)


def _mix(**kwargs):
  attacks = (mixes.MixAttack("clean", "clean", 1.0),
             mixes.MixAttack("uniform", "uniform", 1.0, (2, 4)),
             mixes.MixAttack("fgsm", "fgsm", 2.0, (8, 8), (("a.keras",), ("b.keras",))))
  return mixes.AttackMix("t", "test", (mixes.ImageSource("s", "dir"),),
                         kwargs.pop("attacks", attacks), **kwargs)


def test_draws_follow_the_shares_budget_range_and_surrogate_choices():
  mix = _mix()
  assert mix.shares() == {"clean": 0.25, "uniform": 0.25, "fgsm": 0.5}
  draws = [mixes.draw(mix, f"k{i}", v) for i in range(2000) for v in range(2)]
  counts = collections.Counter(a.name for a, _, _ in draws)
  assert counts["fgsm"] / len(draws) == pytest.approx(0.5, abs=0.02)
  assert counts["clean"] / len(draws) == pytest.approx(0.25, abs=0.02)
  eps = collections.Counter(e for a, e, _ in draws if a.name == "uniform")
  assert sorted(eps) == [2, 3, 4]  # Both ends of the inclusive range, nothing else.
  assert min(eps.values()) / max(eps.values()) > 0.85
  assert {e for a, e, _ in draws if a.name == "clean"} == {0}
  choices = collections.Counter(c for a, _, c in draws if a.name == "fgsm")
  assert sorted(choices) == [0, 1] and abs(choices[0] - choices[1]) < 0.1 * len(draws)
  assert {c for a, _, c in draws if a.name != "fgsm"} == {0}


def test_a_draw_depends_only_on_seed_key_and_version():
  mix = _mix()
  assert mixes.draw(mix, "a", 1, seed=3) == mixes.draw(mix, "a", 1, seed=3)
  by_seed = {mixes.draw(mix, f"k{i}", 0, seed=s)[0].name
             for i in range(20) for s in (0, 1)}
  assert len(by_seed) > 1
  differs = sum(mixes.draw(mix, f"k{i}", 0)[:2] != mixes.draw(mix, f"k{i}", 1)[:2]
                for i in range(50))
  assert differs > 25  # Versions of one image get different attacks / budgets.


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="x", kind="blur", share=1.0), "kind"),
    (dict(name="x", kind="uniform", share=0.0, eps_255=(2, 4)), "share"),
    (dict(name="x", kind="uniform", share=1.0, eps_255=(4, 2)), "eps_255"),
    (dict(name="x", kind="uniform", share=1.0), "budget 0"),
    (dict(name="x", kind="clean", share=1.0, eps_255=(0, 2)), "budget 0"),
    (dict(name="x", kind="pgd", share=1.0, eps_255=(2, 4)), "surrogates"),
    (dict(name="x", kind="uniform", share=1.0, eps_255=(2, 4), surrogates=SURROGATE),
     "surrogates"),
    (dict(name="x", kind="feature", share=1.0, eps_255=(2, 4)), "feature_network"),
])
def test_bad_members_are_refused(kwargs, match):
  with pytest.raises(ValueError, match=match):
    mixes.MixAttack(**kwargs)


def test_bad_mixes_are_refused():
  with pytest.raises(ValueError, match="unique"):
    _mix(attacks=(mixes.MixAttack("a", "clean", 1.0), mixes.MixAttack("a", "clean", 1.0)))
  with pytest.raises(ValueError, match="versions_per_image"):
    _mix(versions_per_image=0)
  with pytest.raises(ValueError, match="known mixes: cifar10, imagenet"):
    mixes.get_mix("nips")


IMAGENET_TARGETS = ("mobilenet_v2_1.0_224", "mobilenet_v1_0.5_160", "mobilenet_v1_0.25_128")
CIFAR_TARGETS = ("resnet_v2", "inception", "mobilenet_v2")


@pytest.mark.parametrize("name, targets", [("imagenet", IMAGENET_TARGETS),
                                           ("cifar10", CIFAR_TARGETS)])
def test_built_in_mixes_never_attack_through_a_target(name, targets):
  mix = mixes.get_mix(name)
  kinds = {a.kind for a in mix.attacks}
  assert kinds == set(mixes.KINDS)  # Every kind: clean, noise, gradient, label-free.
  surrogates = {s for a in mix.attacks for choice in a.surrogates for s in choice}
  feature = {a.feature_network for a in mix.attacks if a.kind == "feature"}
  assert surrogates and feature and not feature & surrogates  # Feature net: no surrogate.
  assert not [s for s in surrogates | feature if any(t in s for t in targets)]
  for attack in mix.attacks:
    if attack.kind != "clean":
      assert attack.eps_255 == (2, 16)
  assert mix.record()["attacks"][0]["eps_255"] == [0, 0]  # JSON data: lists.


def test_imagenet_sources_leave_out_exactly_the_test_split(shared):
  mix = mixes.get_mix("imagenet")
  val = [s for s in mix.sources if s.name == "val"][0]
  images, left_out, _ = mix_set.list_source(val, str(shared), mixes.default_weights_dir())
  listed, _ = folders.list_labelled_images(
      shared / "datasets/imagenet_val_sample", shared / "datasets/imagenet_val_sample/val.txt")
  # The test split of experiments/imagenet (evaluate.py --max_images=650).
  test = set(folders.select_subset([k for k, _, _ in listed], 650))
  train = {k.split("/", 1)[1] for k, _, _ in images}
  assert left_out == 650 and len(train) == 650
  assert not train & test and train | test == {k for k, _, _ in listed}
