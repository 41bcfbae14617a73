r"""Summarises the ImageNet transfer set into one JSON file (imagenet_transfer summary).

Reads, under WORK: the setting search (search/<tag>/{class,val} with their manifests and
per-image sidecars, results/search/<tag>_<part>/results.json), the full set (adv_val,
adv_class) with its evaluations (results/{test,train_val,train_class}) and the white-box
PGD run (results/pgd_classifier_v2). Writes OUTPUT (docs/results/imagenet/
transfer_set.json) and prints the search table in Markdown.

  python experiments/imagenet/summarize_transfer_set.py WORK VAL_DIR VAL_LABELS \
      TEST_IMAGES OUTPUT
"""

import glob, json, os, sys
from cdgan_tf.data import folders
work, val, val_labels, n_test, output = sys.argv[1:6]
n_test = int(n_test)
TARGETS = ["mobilenet_v2_1.0_224_quant", "mobilenet_v1_0.5_160_quant",
           "mobilenet_v1_0.25_128_quant"]
SURROGATE = "mobilenet_v1_0.75_192_quant"

def load(path):
  with open(path) as f:
    return json.load(f)

def sidecar(folder):
  records = {}
  with open(os.path.join(folder, ".attack_stats.jsonl")) as f:
    for line in f:
      try:
        entry = json.loads(line)
      except json.JSONDecodeError:
        continue
      if "key" in entry and os.path.exists(os.path.join(folder, entry["key"] + ".png")):
        records[entry["key"]] = entry
  return records

def attack_stats(records):
  n = len(records)
  return {"images": n,
          "surrogate_top1_before": sum(r["before"][0] == r["label"] for r in records) / n,
          "surrogate_top1_after": sum(r["after"][0] == r["label"] for r in records) / n,
          "rmsd_255_mean": sum(r["rmsd_255"] for r in records) / n,
          "linf_255_max": max(r["linf_255"] for r in records)}

def throughput(manifest):
  attacked = sum(r["attacked"] for r in manifest["runs"])
  seconds = sum(r["seconds"] for r in manifest["runs"])
  return {"attacked": attacked, "seconds": round(seconds, 1),
          "images_per_second": round(attacked / seconds, 3) if seconds else None}

def accuracies(results):
  return {name: {"normal": e.get("normal"), "attack": e.get("attack"), "n": e["n"]}
          for name, e in results["classifiers"].items()}

def combine(parts):
  """Exact pooled accuracies / means over disjoint parts, weighted by image counts."""
  out = {"images": sum(p["attack_stats"]["images"] for p in parts)}
  n = out["images"]
  st = {k: sum(p["attack_stats"][k] * p["attack_stats"]["images"] for p in parts) / n
        for k in ("surrogate_top1_before", "surrogate_top1_after", "rmsd_255_mean")}
  st["linf_255_max"] = max(p["attack_stats"]["linf_255_max"] for p in parts)
  st["images"] = n
  acc = {}
  for name in parts[0]["accuracy"]:
    m = sum(p["accuracy"][name]["n"] for p in parts)
    acc[name] = {"n": m, **{c: sum(p["accuracy"][name][c] * p["accuracy"][name]["n"]
                                   for p in parts) / m for c in ("normal", "attack")}}
  return {"attack_stats": st, "accuracy": acc}

def wall(folder):
  path = os.path.join(folder, "wall_seconds.txt")
  return int(open(path).read()) if os.path.exists(path) else None

summary = {"roles": {
    "surrogate": SURROGATE + " (quantized TFLite; gradients from its float rebuild)",
    "targets": TARGETS, "reserved": "mobilenet_v1_1.0_224_quant_embedding_extractor "
    "(feature network for later work; never a target, never the surrogate)"},
    "search": [], "full_set": {}, "pgd_classifier": None}

# The eps search (train images only).
for tag_dir in sorted(glob.glob(os.path.join(work, "search", "*"))):
  tag = os.path.basename(tag_dir)
  entry = {"tag": tag, "parts": {}}
  parts = []
  for part in ("class", "val"):
    folder = os.path.join(tag_dir, part)
    result = os.path.join(work, "results", "search", f"{tag}_{part}", "results.json")
    if not (os.path.exists(os.path.join(folder, "attack_manifest.json")) and
            os.path.exists(result)):
      continue
    manifest = load(os.path.join(folder, "attack_manifest.json"))
    entry["attack"] = manifest["attack"]
    entry["surrogates"] = [s["name"] for s in manifest["surrogates"]]
    p = {"attack_stats": attack_stats(list(sidecar(folder).values())),
         "accuracy": accuracies(load(result)), "generator": throughput(manifest),
         "manifest_surrogate_top1": manifest["surrogate_top1"]}
    entry["parts"][part] = p
    parts.append(p)
  if len(parts) == 2:
    entry["pooled"] = combine(parts)
  summary["search"].append(entry)

# The full transfer set.
images, _ = folders.list_labelled_images(val, val_labels)
test_keys = set(folders.select_subset([k for k, _, _ in images], n_test))
full = {}
for name in ("adv_val", "adv_class"):
  folder = os.path.join(work, name)
  if os.path.exists(os.path.join(folder, "attack_manifest.json")):
    manifest = load(os.path.join(folder, "attack_manifest.json"))
    full[name] = {"manifest": manifest, "records": sidecar(folder)}
if full:
  summary["full_set"]["attack"] = full["adv_val"]["manifest"]["attack"]
  summary["full_set"]["surrogates"] = [s["name"] for s in
                                       full["adv_val"]["manifest"]["surrogates"]]
  summary["full_set"]["generator"] = {k: throughput(v["manifest"]) for k, v in full.items()}
  splits = {
      "test": ("adv_val", lambda k: k in test_keys, "test"),
      "train_val": ("adv_val", lambda k: k not in test_keys, "train_val"),
      "train_class": ("adv_class", lambda k: True, "train_class")}
  for split, (name, keep, result_name) in splits.items():
    if name not in full:
      continue
    records = [r for k, r in full[name]["records"].items() if keep(k)]
    result = os.path.join(work, "results", result_name, "results.json")
    entry = {"attack_stats": attack_stats(records)}
    if os.path.exists(result):
      res = load(result)
      entry["accuracy"] = accuracies(res)
      entry["evaluate_inputs"] = res["settings"]["inputs"]
      entry["evaluate_wall_seconds"] = wall(os.path.dirname(result))
    summary["full_set"][split] = entry
  if all("accuracy" in summary["full_set"].get(s, {}) for s in ("train_val", "train_class")):
    summary["full_set"]["train_all"] = combine(
        [summary["full_set"]["train_val"], summary["full_set"]["train_class"]])
  if "adv_val" in full:  # The test split must be exactly the evaluated images.
    assert summary["full_set"]["test"]["attack_stats"]["images"] == n_test

pgd = os.path.join(work, "results", "pgd_classifier_v2", "results.json")
if os.path.exists(pgd):
  res = load(pgd)
  summary["pgd_classifier"] = {"results": {k: v for k, v in res.items() if k != "settings"},
                               "settings": res["settings"],
                               "wall_seconds": wall(os.path.dirname(pgd))}
os.makedirs(os.path.dirname(output), exist_ok=True)
with open(output, "w") as f:
  json.dump(summary, f, indent=1, sort_keys=False)
  f.write("\n")

def pct(x):
  return "" if x is None else f"{100 * x:.2f}"
print("| setting | surrogate | images | RMSD | L-inf | surrogate top-1 after | "
      + " | ".join(f"{t} normal / attack" for t in TARGETS) + " |")
for e in summary["search"]:
  if "pooled" not in e:
    continue
  p = e["pooled"]
  cells = [f"{pct(p['accuracy'][t]['normal'])} / {pct(p['accuracy'][t]['attack'])}"
           if t in p["accuracy"] else "" for t in TARGETS]
  print(f"| {e['tag']} | {'+'.join(e['surrogates'])} | {p['attack_stats']['images']} | "
        f"{p['attack_stats']['rmsd_255_mean']:.2f} | {p['attack_stats']['linf_255_max']:.0f} | "
        f"{pct(p['attack_stats']['surrogate_top1_after'])} | " + " | ".join(cells) + " |")
print(f"wrote {output}")
