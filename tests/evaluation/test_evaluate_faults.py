"""evaluate.py under faults, run as an operator would (subprocesses): one writer per
--output_dir, SIGTERM mid-run, a killed run's temporary files, unwritable folders."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_ROOT
from tests.evaluation.test_evaluate import data  # noqa: F401  (the module fixture)


def _command(data, output_dir, *extra):  # noqa: F811
  root = data["root"]
  return [sys.executable, str(REPO_ROOT / "evaluate.py"), f"--clean_dir={root / 'clean'}",
          f"--adversarial_dir={root / 'adversarial'}", f"--classifiers={data['classifier']}",
          f"--sub_model={data['sub']}", f"--super_model={data['super']}",
          f"--output_dir={output_dir}", "--num_samples=0", *extra]


def _hidden(folder):
  return sorted(n for n in os.listdir(folder) if n.startswith("."))


@pytest.mark.slow
def test_second_evaluate_is_refused_and_sigterm_keeps_what_is_done(data, tmp_path):  # noqa: F811
  output_dir = tmp_path / "out"
  output_dir.mkdir()
  stale = output_dir / ".predictions.csv.tmp-999999999.csv"  # A killed run's leftover.
  stale.write_text("key,label\n")
  # One image per batch (12 batches), each with a PGD attack.
  first = subprocess.Popen(
      _command(data, output_dir, "--batch_size=1", "--attack=transfer,pgd_classifier",
               "--steps=300"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  temporary = output_dir / f".predictions.csv.tmp-{first.pid}.csv"
  deadline = time.time() + 300
  while time.time() < deadline and first.poll() is None and not temporary.exists():
    time.sleep(0.05)
  first.send_signal(signal.SIGSTOP)  # Paused mid-run, holding its lock.
  assert first.poll() is None, first.communicate()[1][-3000:]
  assert not stale.exists()

  second = subprocess.run(_command(data, output_dir), capture_output=True, text=True,
                          timeout=300)
  assert second.returncode == 2
  lines = second.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(
      f"evaluate.py: error: {output_dir} is in use by evaluate.py (pid {first.pid} "), lines

  first.send_signal(signal.SIGTERM)  # Delivered when it continues.
  first.send_signal(signal.SIGCONT)
  _, stderr = first.communicate(timeout=300)
  assert first.returncode == 128 + signal.SIGTERM, stderr[-3000:]
  last = stderr.strip().splitlines()[-1]
  assert last.startswith("evaluate.py: stopped by SIGTERM: wrote the results of "), last
  results = json.loads((output_dir / "results.json").read_text())
  done = results["settings"]["images"]
  assert 0 < done < 12 and results["settings"]["complete"] is False
  assert results["settings"]["stopped"] == f"by SIGTERM after {done} of 12 images"
  assert results["classifiers"]["colour"]["n"] == done
  rows = (output_dir / "predictions.csv").read_text().splitlines()
  assert sum(",normal," in r for r in rows) == done
  assert _hidden(output_dir) == []  # No temporary file, no lock.


@pytest.mark.slow
def test_sigterm_inside_a_query_attack_stops_it_without_counting_its_batch(data, tmp_path):  # noqa: F811
  output_dir = tmp_path / "out"
  # One batch of all 12 images whose Square attack would run for hours.
  run = subprocess.Popen(
      _command(data, output_dir, "--batch_size=12", "--attack=square", "--eps=1/255",
               "--queries=1000000"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)
  deadline = time.time() + 300
  while time.time() < deadline and run.poll() is None and not (
      output_dir.exists() and any(n.startswith(".predictions") for n in os.listdir(output_dir))):
    time.sleep(0.05)
  time.sleep(1.0)  # Into the batch.
  asked = time.time()
  run.send_signal(signal.SIGTERM)
  try:
    _, stderr = run.communicate(timeout=120)
  finally:
    run.kill()  # Only if it is still running (a failed test leaves no process behind).
  assert run.returncode == 128 + signal.SIGTERM, stderr[-3000:]
  assert time.time() - asked < 60  # Not after the attack's million queries.
  results = json.loads((output_dir / "results.json").read_text())
  assert results["settings"]["images"] == 0 and results["settings"]["complete"] is False
  assert any(n.startswith("stopped inside a query attack: the batch under way (12 images) "
                          "not counted: square ") for n in results["notes"]), results["notes"]
  assert (output_dir / "predictions.csv").read_text().splitlines()[1:] == []
  assert _hidden(output_dir) == []


def test_unwritable_output_dir_fails_before_loading_models(data, tmp_path):  # noqa: F811
  blocker = tmp_path / "file"
  blocker.write_text("x")
  result = subprocess.run(_command(data, tmp_path / "out", f"--export_dir={blocker}/export"),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(
      f"evaluate.py: error: cannot write to --export_dir {blocker}/export ("), lines
  assert lines[0].endswith("is not a directory); nothing was written")
  assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.slow
def test_short_shard_is_refused_or_skipped_with_the_records_lost(data, tmp_path):  # noqa: F811
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tfrecords_builder import builder  # pylint: disable=import-outside-toplevel
  root, records = data["root"], tmp_path / "records"
  builder.build(str(root / "adversarial"), str(root / "clean"), str(records),
                val_fraction=0.0, num_shards=2)
  manifest = json.loads((records / "manifest.json").read_text())
  shard = manifest["shards"]["train"][1]
  assert [s["examples"] for s in manifest["shards"]["train"]] == [6, 6]
  path = records / shard["file"]
  kept = list(tf.data.TFRecordDataset(str(path)).take(4).as_numpy_iterator())
  with tf.io.TFRecordWriter(str(path)) as writer:  # Cut at a record boundary: 4 of 6.
    for record in kept:
      writer.write(record)
  command = [sys.executable, str(REPO_ROOT / "evaluate.py"),
             f"--records={records}/train-*", f"--classifiers={data['classifier']}",
             "--num_samples=0"]
  refused = subprocess.run(command + [f"--output_dir={tmp_path / 'a'}"],
                           capture_output=True, text=True, timeout=300)
  assert refused.returncode == 2
  assert refused.stderr.strip().splitlines() == [
      f"evaluate.py: error: record shard {path} is damaged: it holds 4 records where "
      "manifest.json says 6; rebuild it, or pass --skip_damaged_shards to leave its 6 "
      "records out"], refused.stderr
  skipped = subprocess.run(command + [f"--output_dir={tmp_path / 'b'}",
                                      "--skip_damaged_shards"],
                           capture_output=True, text=True, timeout=300)
  assert skipped.returncode == 0, skipped.stderr[-3000:]
  assert "left out 1 damaged shard(s), 6 records lost" in skipped.stderr
  results = json.loads((tmp_path / "b" / "results.json").read_text())
  assert results["classifiers"]["colour"]["n"] == 6


@pytest.mark.slow
def test_latin1_file_name_is_skipped_and_listed(data, tmp_path):  # noqa: F811
  import shutil  # pylint: disable=import-outside-toplevel
  root = tmp_path / "data"
  for side in ("clean", "adversarial"):
    shutil.copytree(data["root"] / side, root / side)
    # A latin-1 "café.png" (byte 0xe9), as an old archive would have it.
    os.rename(root / side / "blue" / "0000.png",
              os.path.join(os.fsencode(root / side / "blue"), b"caf\xe9.png"))
  output_dir = tmp_path / "out"
  output_dir.mkdir()
  stale = os.path.join(os.fsencode(output_dir), b".caf\xe9.png.tmp-999999999.png")
  open(stale, "wb").close()  # A killed writer's temporary with that name.
  command = _command(dict(data, root=root), output_dir)
  result = subprocess.run(command, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert not os.path.exists(stale)
  results = json.loads((output_dir / "results.json").read_text())
  assert results["classifiers"]["colour"]["n"] == 11  # 12 pairs, one name unreadable.
  assert results["settings"]["skipped"] == 2
  for side in ("clean", "adversarial"):
    assert (f"{root / side / 'blue'}/caf\\xe9.png: file name is not valid UTF-8 (e.g. "
            "latin-1 from an old archive); rename it to read it") in (
                results["settings"]["skipped_examples"])
