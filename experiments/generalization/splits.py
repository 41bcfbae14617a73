"""The image splits of the generalization tables (no flags: importable anywhere).

`split_images` picks a table's images with `folders.select_subset`, the function every
test split of the project comes from; a validation split first leaves out the images a
mix trains on (and, optionally, an earlier run's training subset).
"""

from cdgan_tf.attacks import mix_set
from cdgan_tf.attacks import mixes
from cdgan_tf.data import folders
from tfrecords_builder import builder


def split_images(spec: dict, shared_dir: str, max_images: int):
  """(clean folder, [(key, path, label)]): `select_subset` of `max_images` of its images.

  When `spec["exclude_mix"]` names a mix (a validation split), the images that mix
  trains on are left out first, then `select_subset(rest, spec["exclude_subset"])` when
  given, so validation and training images never overlap. When `spec["mix_val"]` is
  (mix, source, val_fraction), only that source's images in the mix records' val split
  (`builder.split_of` of "<source>/<key>" at seed 0, as `mix_records.pack` splits) are
  kept: images the mix generated versions of but never trains on.
  """
  clean_dir = mixes.resolve_spec(spec["clean_dir"], shared_dir, "weights")
  labels = spec["labels"] and mixes.resolve_spec(spec["labels"], shared_dir, "weights")
  listed, _ = folders.list_labelled_images(clean_dir, labels)
  if spec.get("exclude_mix"):
    used = {key.split("/", 1)[1] for source in mixes.MIXES[spec["exclude_mix"]].sources
            for key, _, _ in mix_set.list_source(source, shared_dir, "weights")[0]}
    listed = [i for i in listed if i[0] not in used]
  if spec.get("mix_val"):
    name, source_name, fraction = spec["mix_val"]
    source = next(s for s in mixes.MIXES[name].sources if s.name == source_name)
    keys = {key.split("/", 1)[1] for key, _, _ in mix_set.list_source(
        source, shared_dir, "weights")[0] if builder.split_of(key, fraction) == "val"}
    listed = [i for i in listed if i[0] in keys]
  if spec.get("exclude_subset"):  # E.g. the images earlier GANs trained on.
    used = set(folders.select_subset([k for k, _, _ in listed], spec["exclude_subset"]))
    listed = [i for i in listed if i[0] not in used]
  keep = set(folders.select_subset([k for k, _, _ in listed], max_images))
  return clean_dir, [i for i in listed if i[0] in keep]
