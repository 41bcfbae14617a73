"""The experiment runner: skip by settings hash, resume, flags, overrides, shipping."""

import hashlib
import json
import os
import sys

import pytest

from experiments import actions
from experiments import recipes as recipes_lib
from experiments import runner
from experiments.recipes import common
from experiments.runner import Job, Recipe

CALLS = []


def record_call(**kwargs):
  """An action job for the tests: remembers each call."""
  CALLS.append(kwargs)


def _recipe(value=1, fail=False):
  stages = {
      "first": [Job("first/a", "tests.experiments.test_runner:record_call",
                    {"value": value}, nice=0)],
      "second": [Job("second/b", "-c", {}, nice=0,
                     positional=("import sys; sys.exit(3)" if fail else "pass",))],
  }
  return Recipe("toy", "a toy", None, stages, ("first", "second"))


def test_flags_are_formatted_as_absl_reads_them():
  assert runner.format_flag("eps", "8/255") == "--eps=8/255"
  assert runner.format_flag("image_skip", True) == "--image_skip"
  assert runner.format_flag("image_skip", False) == "--noimage_skip"
  assert runner.format_flag("defenses", ("cdgan", "resize")) == "--defenses=cdgan,resize"
  job = Job("x", "-m tfrecords_builder", {"a": 1, "b": True}, nice=3)
  assert job.command("py") == ["nice", "-n", "3", "py", "-m", "tfrecords_builder", "--a=1",
                               "--b"]


def test_a_job_runs_once_per_settings_and_again_when_they_change(tmp_path):
  CALLS.clear()
  assert runner.run(_recipe(1), [], str(tmp_path), python=sys.executable,
                    log=lambda _: None) == ["first/a", "second/b"]
  assert CALLS == [{"value": 1}]
  # Same settings: nothing runs, although no output file marks the jobs as done.
  assert runner.run(_recipe(1), [], str(tmp_path), log=lambda _: None) == []
  assert CALLS == [{"value": 1}]
  # Changed settings: that job (only) runs again.
  assert runner.run(_recipe(2), [], str(tmp_path), log=lambda _: None) == ["first/a"]
  assert CALLS == [{"value": 1}, {"value": 2}]
  state = json.loads((tmp_path / runner.STATE_FILE).read_text())["jobs"]
  assert state["first/a"]["hash"] == _recipe(2).stages["first"][0].settings_hash()
  assert state["first/a"]["settings"]["flags"] == {"value": 2}


def test_a_failed_job_is_not_recorded_and_the_rerun_resumes_there(tmp_path):
  CALLS.clear()
  with pytest.raises(runner.JobFailed, match="second/b failed .exit 3"):
    runner.run(_recipe(1, fail=True), [], str(tmp_path), log=lambda _: None)
  state = json.loads((tmp_path / runner.STATE_FILE).read_text())["jobs"]
  assert list(state) == ["first/a"]
  assert runner.run(_recipe(1), [], str(tmp_path), log=lambda _: None) == ["second/b"]
  assert len(CALLS) == 1


def test_a_dry_run_runs_and_records_nothing(tmp_path):
  CALLS.clear()
  assert runner.run(_recipe(1), ["second"], str(tmp_path), dry_run=True,
                    log=lambda _: None) == ["second/b"]
  assert not CALLS and not (tmp_path / runner.STATE_FILE).exists()


def test_unknown_stage_and_bad_overrides_are_usage_errors():
  with pytest.raises(runner.RecipeError, match="no stage bogus"):
    _recipe().select(["bogus"])
  settings = recipes_lib.registry()["cifar10_weak"].settings
  changed = runner.parse_overrides(settings, ["steps=10", "feature_weight=0.5",
                                              "probe_eps=7,8,9", "tag=_x"])
  assert (changed.steps, changed.feature_weight, changed.probe_eps, changed.tag) == (
      10, 0.5, ("7", "8", "9"), "_x")
  for bad in ("steps=ten", "nokey=1", "steps"):
    with pytest.raises(runner.RecipeError, match="--set"):
      runner.parse_overrides(settings, [bad])
  with pytest.raises(runner.RecipeError, match="no recipe"):
    recipes_lib.get_recipe("nope")


def test_every_recipe_builds_with_unique_job_names(tmp_path):
  for name in recipes_lib.registry():
    recipe = recipes_lib.get_recipe(name, str(tmp_path))
    names = [job.name for jobs in recipe.stages.values() for job in jobs]
    assert len(names) == len(set(names)), name
    assert set(recipe.default_stages) <= set(recipe.stages)


def test_shared_jobs_have_one_hash_in_every_recipe(tmp_path):
  """The transfer set made by one recipe is skipped by the next (same name, same hash)."""
  hashes = {}
  for name in ("cifar10_paper", "cifar10_feature", "cifar10_feature_chained",
               "cifar10_shipped"):
    for job in recipes_lib.get_recipe(name, str(tmp_path)).stages["attack"]:
      hashes.setdefault(job.name, set()).add(job.settings_hash())
  assert {k: len(v) for k, v in hashes.items()} == {"attack/adv_train": 1,
                                                    "attack/adv_test": 1}


def test_the_ported_recipes_run_the_shell_scripts_commands(tmp_path):
  """Pins the port of weak_transfer_set.sh and recipes.sh (feature_chained_w0.2_s4000)."""
  work = str(tmp_path)
  weak = recipes_lib.get_recipe("cifar10_weak", work).stages["evaluate"][0]
  assert weak.command("py")[4:] == [
      "evaluate.py", "--clean_dir=../shared/datasets/cifar10/test",
      f"--adversarial_dir={work}/weak/adv_test",
      "--classifiers=weights/cifar10/resnet_v2.keras,weights/cifar10/mobilenet_v2.keras,"
      "weights/cifar10/inception.keras",
      "--sub_model=weights/cifar10/cdgan/sub", "--super_model=weights/cifar10/cdgan/super",
      "--defenses=cdgan,resize,jpeg75", "--batch_size=100", "--max_images=2000",
      f"--output_dir={work}/weak/results_shipped"]
  shipped = recipes_lib.get_recipe("cifar10_feature_chained", work)
  sub, sup = shipped.stages["gans"]
  runs = f"{work}/recipes/feature_chained_w0.2_s4000"
  assert sub.flags["model_dir"] == f"{runs}/sub" and "sub_model" not in sub.flags
  assert sup.flags["sub_model"] == f"{runs}/sub"
  for job in (sub, sup):
    assert (job.flags["train_steps"], job.flags["warmup_steps"]) == (4000, 2000)
    assert job.flags["feature_weight"] == 0.2
    assert job.flags["feature_extractor"] == "weights/cifar10/densenet_feature.keras"
    assert job.flags["image_skip"] is True and job.flags["scale"] == 2
  assert shipped.stages["ship"][0].flags == {"runs": runs, "destination":
                                             "weights/cifar10/cdgan"}


def _old_hash(settings: dict) -> str:
  """The hash as jobs were recorded before the transfer-set generator's rename."""
  text = json.dumps(settings, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_transfer_set_jobs_use_the_new_names_and_finished_ones_stay_done(tmp_path):
  work = str(tmp_path)
  job = recipes_lib.get_recipe("cifar10_weak", work).stages["attack"][0]
  assert job.command("py")[4:7] == ["-m", "tfrecords_builder.transfer_set",
                                    "--clean_dir=../shared/datasets/cifar10/test"]
  assert "--algorithm=mifgsm" in job.command("py") and "attack" not in job.flags
  # Recorded under the old names (python -m tfrecords_builder.attack --attack=mifgsm)
  # before the rename: done, not rerun.
  old = {"program": "-m tfrecords_builder.attack",
         "flags": {("attack" if k == "algorithm" else k): v for k, v in job.flags.items()}}
  (tmp_path / runner.STATE_FILE).write_text(json.dumps(
      {"jobs": {job.name: {"hash": _old_hash(old), "settings": old}}}))
  recipe = Recipe("toy", "", None, {"attack": [job]}, ("attack",))
  assert runner.run(recipe, [], work, dry_run=True, log=lambda _: None) == []
  # Other settings under the old names still run again.
  old["flags"]["eps"] = "1/255"
  (tmp_path / runner.STATE_FILE).write_text(json.dumps(
      {"jobs": {job.name: {"hash": _old_hash(old), "settings": old}}}))
  assert runner.run(recipe, [], work, dry_run=True, log=lambda _: None) == [job.name]


def test_a_target_that_is_also_the_surrogate_is_refused():
  with pytest.raises(runner.RecipeError, match="both a target and the surrogate"):
    common.Roles(targets=("a.keras", "b.keras"), surrogate="b.keras")


def _exported(folder, role, sub_model=""):
  os.makedirs(folder / "export")
  (folder / "export" / "generator.keras").write_bytes(os.urandom(64))
  (folder / "export" / "generator.json").write_text(json.dumps(
      {"role": role, "scale": 2, "image_size": 32, "step": 7, "sub_model": sub_model}))


def test_ship_copies_the_files_and_records_the_shipped_sub_generator(tmp_path):
  runs = tmp_path / "runs"
  _exported(runs / "sub", "sub")
  _exported(runs / "super", "super", sub_model=str(runs / "sub"))
  destination = tmp_path / "weights"
  actions.ship_generators(str(runs), str(destination))
  for role in ("sub", "super"):
    assert ((destination / role / "generator.keras").read_bytes() ==
            (runs / role / "export" / "generator.keras").read_bytes())
  sup = json.loads((destination / "super" / "generator.json").read_text())
  assert sup["sub_model"] == str(destination / "sub")
  assert (sup["step"], sup["input_size"], sup["output_size"]) == (7, 16, 32)
  assert json.loads((destination / "sub" / "generator.json").read_text())["sub_model"] == ""
  assert not [n for n in os.listdir(destination / "super") if ".tmp-" in n]


def test_a_busy_work_folder_is_one_line_naming_the_holder(tmp_path):
  """A second runner on a locked work folder: exit 2, one line naming the holder's job
  (not a traceback, not the refused recipe)."""
  import json  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  from cdgan_tf.common import locks  # pylint: disable=import-outside-toplevel
  from tests.conftest import REPO_ROOT  # pylint: disable=import-outside-toplevel
  with locks.FolderLock(str(tmp_path), "the experiment runner (holder_recipe)"):
    done = subprocess.run(
        [sys.executable, "-m", "experiments", "run", "cifar10_mix_warm", "ship",
         f"--work={tmp_path}"], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=120)  # (ship fails at once on an empty folder if the lock let it run)
    holder = json.loads((tmp_path / locks.LOCK_FILE).read_text())
  lines = done.stderr.strip().splitlines()
  assert done.returncode == 2, done.stderr[-2000:]
  assert len(lines) == 1 and "Traceback" not in done.stderr
  assert f"is in use by the experiment runner (holder_recipe) (pid {holder['pid']}" in lines[0]


# A job that saves its work on the first SIGTERM (as training does) and says so.
_SAVING_JOB = """
import os, signal, sys, time
folder = sys.argv[1]
def stop(signum, frame):
  open(os.path.join(folder, "saved"), "w").write(str(signum))
  sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
open(os.path.join(folder, "started"), "w").close()
time.sleep(60)
"""

# The runner as `python -m experiments run` runs it: two jobs, SIGTERM during the first.
_RUNNER = """
import sys
from cdgan_tf.common import interrupts
from experiments import runner
from experiments.runner import Job, Recipe
work, code = sys.argv[1], sys.argv[2]
jobs = [Job("save/a", "-c", {}, nice=0, positional=(code, work)),
        Job("next/b", "-c", {}, nice=0,
            positional=(f"open('{work}/next_ran', 'w').close()",))]
recipe = Recipe("toy", "a toy", None, {"save": jobs[:1], "next": jobs[1:]},
                ("save", "next"))
try:
  runner.run(recipe, [], work, log=lambda _: None)
except interrupts.Interrupted as e:
  print(e, file=sys.stderr)
  sys.exit(e.exit_code)
"""


def test_sigterm_reaches_the_running_job_and_nothing_is_recorded(tmp_path):
  """A scheduler's SIGTERM to the runner: the job gets it and saves its work, the runner
  records nothing (so the rerun runs the job again and it resumes from what it saved),
  starts no other job, releases the work folder and exits 143."""
  import signal  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import time  # pylint: disable=import-outside-toplevel
  from cdgan_tf.common import locks  # pylint: disable=import-outside-toplevel
  from tests.conftest import REPO_ROOT  # pylint: disable=import-outside-toplevel
  proc = subprocess.Popen([sys.executable, "-c", _RUNNER, str(tmp_path), _SAVING_JOB],
                          cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 60
  while not (tmp_path / "started").exists() and time.time() < deadline:
    time.sleep(0.1)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=60)
  assert proc.returncode == 143, stderr
  assert (tmp_path / "saved").read_text() == str(int(signal.SIGTERM))
  assert "stopped by SIGTERM: job save/a ended with exit 143 and is not recorded" in stderr
  assert not (tmp_path / "next_ran").exists()
  assert not (tmp_path / locks.LOCK_FILE).exists()
  assert not (tmp_path / runner.STATE_FILE).exists() or "save/a" not in json.loads(
      (tmp_path / runner.STATE_FILE).read_text())["jobs"]
