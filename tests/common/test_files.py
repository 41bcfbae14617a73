"""Atomic files and the stale-temporary cleanup, whatever the names in the folder."""

import os

from cdgan_tf.common import files
from cdgan_tf.data import folders


def test_stale_temporaries_of_any_name_are_removed(tmp_path):
  folder = os.fsencode(tmp_path)
  names = [b".caf\xe9.png.tmp-999999999.png", b".results.json.tmp-999999998.json",
           b".x.tmp-notapid", b"caf\xe9.png", b".live.tmp-%d.json" % os.getppid()]
  for name in names:
    open(os.path.join(folder, name), "wb").close()
  removed = files.remove_stale_temporaries(str(tmp_path))
  assert sorted(removed) == sorted([f"{tmp_path}/.caf\\xe9.png.tmp-999999999.png",
                                    f"{tmp_path}/.results.json.tmp-999999998.json",
                                    f"{tmp_path}/.x.tmp-notapid"])
  # The plain file and the temporary of a live process (our parent) are kept.
  assert sorted(os.listdir(folder)) == sorted([b"caf\xe9.png", names[4]])


def test_non_utf8_names_are_skipped_with_a_reason(tmp_path):
  (tmp_path / "cls").mkdir()
  (tmp_path / "cls" / "good.png").write_bytes(b"")
  open(os.path.join(os.fsencode(tmp_path / "cls"), b"caf\xe9.png"), "wb").close()
  os.mkdir(os.path.join(os.fsencode(tmp_path), b"bad\xff"))
  images, skipped = folders.list_labelled_images(tmp_path)
  assert [key for key, _, _ in images] == ["cls/good"]
  assert sorted((s.path, s.kind) for s in skipped) == [
      (f"{tmp_path}/bad\\xff", folders.NOT_UTF8_NAME),
      (f"{tmp_path}/cls/caf\\xe9.png", folders.NOT_UTF8_NAME)]
  assert folders.class_names(tmp_path) == ["cls"]
