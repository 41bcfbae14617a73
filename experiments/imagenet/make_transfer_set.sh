#!/usr/bin/env bash
# A DAmageNet-style ImageNet transfer set made on a real surrogate, resumable:
#   split     the test split and the "train" images (symlink folder $WORK/val_train)
#   search    the attack-setting search, on train images only (never the test split)
#   attack    the full transfer set: $WORK/adv_val (all 1,300 val-sample images) and
#             $WORK/adv_class (the 1,000 class samples), both --crop=damagenet
#   evaluate  the targets (real TFLite models, interpreter) on the test split and on
#             the train images, normal -> attack
#   pgd       white-box PGD 4/255 on the real MobileNet-v2 .tflite (rebuild gradients)
#   summary   docs/results/imagenet/transfer_set.json from the manifests and results
#
# Roles (fixed):
#   surrogate  MobileNet-v1 0.75 192 (quantized TFLite; gradients from its float rebuild)
#   targets    MobileNet-v2 1.0 224 (the paper's classifier), MobileNet-v1 0.5 160,
#              MobileNet-v1 0.25 128 (all quantized TFLite, scored by the interpreter)
#   reserved   MobileNet-v1 1.0 224 embedding extractor: feature network for later work,
#              never a target, never the surrogate
# Test split: folders.select_subset(<the 1,300 val stems>, 650), i.e. exactly what
# `evaluate.py --clean_dir=<val sample> --labels=val.txt --max_images=650` evaluates.
# Train images: the other 650 val images and the 1,000 class samples; the search uses
# only these (SEARCH_IMAGES of each).
#
# The chosen attack (docs/results/imagenet/transfer_set.md): MI-FGSM, eps 9/255, 40 steps
# of eps/40, momentum decay 1.0, input diversity on every step (probability 1.0), seed 0:
# the smallest RMSD found at which the real MobileNet-v2 falls to <= 20 % on the train
# images (18.25 % at RMSD 6.60 on 400 of them).
#
# Every step skips finished work (the attack resumes per image; an evaluation whose
# results.json exists is not rerun), so the script can be rerun after an interruption.
# Usage (from the repo root):
#   bash experiments/imagenet/make_transfer_set.sh [STEP...]
#   default steps: split attack evaluate pgd summary   (search only on request)
# Environment: WORK (scratch, default /work/scratch/imagenet), SHARED (default
# ../shared), PY (default .venv/bin/python), EPS (default 9/255), ATTACK_STEPS (default
# 40), DIVERSITY (default 1.0), SEARCH (search settings "EPS[,STEPS[,DIVERSITY[,ens]]]",
# EPS in 1/255 units, STEPS default 10, DIVERSITY default 0.5, "ens" = the v1 ensemble
# as surrogate; default: the settings of transfer_set.md), SEARCH_IMAGES (images per
# train set in the search, default 200), NICE (default 5).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${WORK:-/work/scratch/imagenet}
SHARED=${SHARED:-../shared}
PY=${PY:-.venv/bin/python}
EPS=${EPS:-9/255}
ATTACK_STEPS=${ATTACK_STEPS:-40}
DIVERSITY=${DIVERSITY:-1.0}
SEARCH=${SEARCH:-8 10 12 14 16 13 12,10,1.0 12,20 8,10,0.5,ens 10,10,0.5,ens 11,20,1.0
10,20,1.0 11,20,0.5 10,20,1.0,ens 9,20,1.0,ens 10,40,1.0 9,40,1.0 10,30,1.0}
SEARCH_IMAGES=${SEARCH_IMAGES:-200}
RUN="nice -n ${NICE:-5} $PY"

VAL=$SHARED/datasets/imagenet_val_sample
VAL_LABELS=$VAL/val.txt
CLASS=$SHARED/datasets/imagenet_class_samples
CLASS_LABELS=$CLASS/labels.txt
TFLITE=$SHARED/models/tflite
SURROGATE=$TFLITE/mobilenet_v1_0.75_192_quant.tflite
V2=$TFLITE/mobilenet_v2_1.0_224_quant.tflite
TARGETS=$V2,$TFLITE/mobilenet_v1_0.5_160_quant.tflite,$TFLITE/mobilenet_v1_0.25_128_quant.tflite
# Search only: the v1 ensemble as the surrogate (its members are then no targets).
ENSEMBLE=$SURROGATE,$TFLITE/mobilenet_v1_0.5_160_quant.tflite,$TFLITE/mobilenet_v1_0.25_128_quant.tflite
# The surrogate is scored too (white-box, a check on the manifest's numbers).
SCORED=$TARGETS,$SURROGATE
TEST_IMAGES=650
COMMON_FLAGS=(--attack=mifgsm --decay=1.0 --crop=damagenet --seed=0 --batch_size=32
              --log_every=320)
STEPS=${*:-split attack evaluate pgd summary}
mkdir -p "$WORK/results"

attack() {  # attack SURROGATE(S) CLEAN_DIR LABELS OUTPUT_DIR [FLAGS...]
  local surrogate=$1 clean=$2 labels=$3 out=$4
  shift 4
  $RUN -m tfrecords_builder.attack --surrogate="$surrogate" --clean_dir="$clean" \
      --labels="$labels" "${COMMON_FLAGS[@]}" --output_dir="$out" "$@"
}

evaluate() {  # evaluate OUTPUT_DIR [FLAGS...]   (skipped when OUTPUT_DIR/results.json exists)
  local out=$1 t0=$SECONDS
  shift
  if [ -f "$out/results.json" ]; then echo "done: $out"; return; fi
  $RUN evaluate.py --batch_size=32 --num_samples=0 --output_dir="$out" "$@"
  echo $((SECONDS - t0)) > "$out/wall_seconds.txt"
}

for step in $STEPS; do
  echo "=== $step ($(date -u +%H:%M:%S))"
  start=$SECONDS
  case $step in
    split)  # $WORK/val_train: symlinks to the 650 val-sample images outside the test split.
      $PY - "$VAL" "$VAL_LABELS" "$WORK" "$TEST_IMAGES" <<'EOF'
import json, os, sys
from cdgan_tf.data import folders
val, labels, work, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
images, _ = folders.list_labelled_images(val, labels)
test = set(folders.select_subset([k for k, _, _ in images], n))
train_dir = os.path.join(work, "val_train")
os.makedirs(train_dir, exist_ok=True)
for key, path, _ in images:
  link = os.path.join(train_dir, os.path.basename(path))
  if key not in test and not os.path.lexists(link):
    os.symlink(os.path.abspath(path), link)
with open(os.path.join(work, "val_split.json"), "w") as f:
  json.dump({"test": sorted(test), "train": sorted(k for k, _, _ in images if k not in test)},
            f, indent=0)
print(f"{len(images)} val images: {len(test)} test, {len(images) - len(test)} train "
      f"({train_dir})")
EOF
      ;;
    search)  # Train images only: SEARCH_IMAGES class samples + SEARCH_IMAGES val_train images.
      for setting in $SEARCH; do
        IFS=, read -r e s d ens <<< "$setting"
        s=${s:-10}; d=${d:-0.5}
        tag=eps${e}_s${s}_d${d}
        surrogate=$SURROGATE
        if [ "${ens:-}" = ens ]; then tag=${tag}_ens; surrogate=$ENSEMBLE; fi
        for part in class val; do
          if [ $part = class ]; then clean=$CLASS; labels=$CLASS_LABELS
          else clean=$WORK/val_train; labels=$VAL_LABELS; fi
          attack "$surrogate" "$clean" "$labels" "$WORK/search/$tag/$part" --eps="$e/255" \
              --steps="$s" --diversity_prob="$d" --max_images="$SEARCH_IMAGES"
          evaluate "$WORK/results/search/${tag}_$part" --clean_dir="$clean" \
              --adversarial_dir="$WORK/search/$tag/$part" --labels="$labels" \
              --crop=damagenet --center_crop=1.0 --classifiers="$SCORED"
        done
      done ;;
    attack)
      for set in val class; do
        if [ $set = val ]; then clean=$VAL; labels=$VAL_LABELS
        else clean=$CLASS; labels=$CLASS_LABELS; fi
        attack "$SURROGATE" "$clean" "$labels" "$WORK/adv_$set" --eps="$EPS" \
            --steps="$ATTACK_STEPS" --diversity_prob="$DIVERSITY"
      done ;;
    evaluate)  # DAmageNet-style images are already cropped: --center_crop=1.0.
      evaluate "$WORK/results/test" --clean_dir="$VAL" --adversarial_dir="$WORK/adv_val" \
          --labels="$VAL_LABELS" --crop=damagenet --center_crop=1.0 \
          --max_images=$TEST_IMAGES --classifiers="$SCORED"
      evaluate "$WORK/results/train_val" --clean_dir="$WORK/val_train" \
          --adversarial_dir="$WORK/adv_val" --labels="$VAL_LABELS" --crop=damagenet \
          --center_crop=1.0 --classifiers="$SCORED"
      evaluate "$WORK/results/train_class" --clean_dir="$CLASS" \
          --adversarial_dir="$WORK/adv_class" --labels="$CLASS_LABELS" --crop=damagenet \
          --center_crop=1.0 --classifiers="$SCORED" ;;
    pgd)  # 200 clean val images as published (227x227), the usual 87.5 % central crop.
      evaluate "$WORK/results/pgd_classifier_v2" --clean_dir="$VAL" --labels="$VAL_LABELS" \
          --classifiers="$V2" --attack=pgd_classifier --eps=4/255 --steps=10 \
          --max_images=200 --center_crop=0.875 ;;
    summary)
      mkdir -p docs/results/imagenet
      $PY experiments/imagenet/summarize_transfer_set.py "$WORK" "$VAL" "$VAL_LABELS" \
          "$TEST_IMAGES" docs/results/imagenet/transfer_set.json ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
  echo "=== $step done in $((SECONDS - start)) s"
done
