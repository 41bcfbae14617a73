#!/usr/bin/env bash
# The purifier-quality recipe search on CIFAR-10 (issue: "A purifier that beats bicubic").
# Same transfer sets, targets and 2,000 test images as run_cdgan.sh; each recipe trains
# both GANs with the measured run's settings plus its levers, then evaluate.py scores it:
#
#   paper     the shipped weights (weights/cifar10/cdgan): adversarial pairs only
#   clean     + clean -> clean pairs (--clean_pair_fraction)
#   chained   + the super GAN trained on the paper sub generator's outputs (--sub_model)
#   feature   + a feature loss on the DenseNet feature network's logits (neither a
#               target nor the surrogate: weights/cifar10/densenet_feature.keras)
#   combo     clean pairs + feature loss for both GANs, the super GAN chained on combo's
#               sub generator
#   feature_chained  feature loss for both GANs, the super GAN chained on its sub generator
#
# Two more steps act on the chosen run, SHIP (default feature_chained_w0.2_s4000: the
# best defense under the transfer attack, see docs/results/cifar10/recipes.md):
#   full      every defense and ablation (bits4, median3 too) on the 2,000 test images
#             under the strong transfer attack, with the sample grid (docs/results.md)
#   adaptive  pgd_classifier, pgd_defended and bpda at eps 8/255 on 300 test images
#             (the white-box rows of docs/results.md)
#   ship      copies its generators to weights/cifar10/cdgan/{sub,super} (the demo's)
# The shipped run is made with:
#   TAG=_w0.2_s4000 FEATURE_WEIGHT=0.2 STEPS=4000 bash experiments/cifar10/recipes.sh \
#       feature_chained full adaptive ship
#
# TAG (default "") is appended to the run folders, so variants of a recipe (other
# STEPS, FEATURE_WEIGHT, CLEAN_FRACTION) live side by side: TAG=_w0.2 FEATURE_WEIGHT=0.2.
#
# Resumable: training resumes from checkpoints; finished evaluations are skipped.
# Usage (from the repo root):
#   bash experiments/cifar10/recipes.sh [RECIPE...]    # default: all, in the order above
# Environment: WORK (default /work/scratch/cifar; needs $WORK/records and $WORK/adv_test
# from run_cdgan.sh, and $WEAK/adv_test from weak_transfer_set.sh), STEPS (default 2000),
# CLEAN_FRACTION (0.5), FEATURE_WEIGHT (see below), PY.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DATA=${CDGAN_DATA_DIR:-../shared/datasets/cifar10}
WORK=${WORK:-/work/scratch/cifar}
WEAK=${WEAK:-/work/scratch/cifar_weak}
W=weights/cifar10
STEPS=${STEPS:-2000}
CLEAN_FRACTION=${CLEAN_FRACTION:-0.5}
FEATURE_WEIGHT=${FEATURE_WEIGHT:-0.02}
FEATURE=(--feature_extractor=$W/densenet_feature.keras --feature_weight="$FEATURE_WEIGHT")
TARGETS="$W/resnet_v2.keras,$W/mobilenet_v2.keras,$W/inception.keras"
GAN_FLAGS=(--train_records="$WORK/records/train-*" --val_records="$WORK/records/val-*"
           --image_size=32 --scale=2 --batch_size=16 --num_res_blocks=8 --filters=64
           --image_skip --content_loss=l1 --adversarial_weight=1e-4 --summary_every=100
           --checkpoint_every=500 --eval_every=500 --eval_steps=20 --seed=0
           --train_steps="$STEPS" --warmup_steps=$((STEPS / 2)))
RUNS="$WORK/recipes"
TAG=${TAG:-}
RECIPES=${*:-paper clean chained feature combo}
SHIP=${SHIP:-feature_chained_w0.2_s4000}

train() {  # train ROLE MODEL_DIR [FLAGS...]
  local role=$1 dir=$2
  shift 2
  $PY train_$role.py "${GAN_FLAGS[@]}" --model_dir="$dir" "$@"
}

evaluate() {  # evaluate NAME SUB SUPER
  local name=$1 sub=$2 super=$3
  for attack in strong weak; do
    local adv=$WORK/adv_test out=$RUNS/$name/results_$attack
    [ $attack = weak ] && adv=$WEAK/adv_test
    [ -f "$out/results.json" ] && continue
    [ -d "$adv" ] || { echo "skip $attack: no $adv"; continue; }
    $PY evaluate.py --clean_dir="$DATA/test" --adversarial_dir="$adv" \
        --classifiers="$TARGETS" --sub_model="$sub" --super_model="$super" \
        --defenses=cdgan,resize,jpeg75,sub_only,super_only --batch_size=100 \
        --max_images=2000 --output_dir="$out"
  done
}

for recipe in $RECIPES; do
  echo "=== $recipe$TAG ($(date -u +%H:%M:%S))"
  dir=$RUNS/$recipe$TAG
  case $recipe in
    paper)
      evaluate paper $W/cdgan/sub $W/cdgan/super ;;
    clean)
      train sub "$dir/sub" --clean_pair_fraction="$CLEAN_FRACTION"
      train super "$dir/super" --clean_pair_fraction="$CLEAN_FRACTION"
      evaluate clean$TAG "$dir/sub" "$dir/super" ;;
    chained)
      train super "$dir/super" --sub_model=$W/cdgan/sub
      evaluate chained$TAG $W/cdgan/sub "$dir/super" ;;
    feature)
      train sub "$dir/sub" "${FEATURE[@]}"
      train super "$dir/super" "${FEATURE[@]}"
      evaluate feature$TAG "$dir/sub" "$dir/super" ;;
    combo)
      train sub "$dir/sub" --clean_pair_fraction="$CLEAN_FRACTION" "${FEATURE[@]}"
      train super "$dir/super" --clean_pair_fraction="$CLEAN_FRACTION" "${FEATURE[@]}" \
          --sub_model="$dir/sub"
      evaluate combo$TAG "$dir/sub" "$dir/super" ;;
    feature_chained)
      train sub "$dir/sub" "${FEATURE[@]}"
      train super "$dir/super" "${FEATURE[@]}" --sub_model="$dir/sub"
      evaluate feature_chained$TAG "$dir/sub" "$dir/super" ;;
    full)
      out=$RUNS/$SHIP/results_full
      [ -f "$out/results.json" ] || $PY evaluate.py --clean_dir="$DATA/test" \
          --adversarial_dir="$WORK/adv_test" --classifiers="$TARGETS" \
          --sub_model="$RUNS/$SHIP/sub" --super_model="$RUNS/$SHIP/super" \
          --defenses=cdgan,resize,jpeg75,bits4,median3,sub_only,super_only \
          --batch_size=100 --max_images=2000 --output_dir="$out" ;;
    adaptive)
      out=$RUNS/$SHIP/results_adaptive
      [ -f "$out/results.json" ] || $PY evaluate.py --clean_dir="$DATA/test" \
          --classifiers="$TARGETS" --sub_model="$RUNS/$SHIP/sub" \
          --super_model="$RUNS/$SHIP/super" --defenses=cdgan,resize,jpeg75 \
          --attack=pgd_classifier,pgd_defended,bpda --eps=8/255 --steps=10 \
          --max_images=300 --batch_size=100 --output_dir="$out" ;;
    ship)
      for role in sub super; do
        mkdir -p $W/cdgan/$role
        cp "$RUNS/$SHIP/$role/export/generator.keras" \
           "$RUNS/$SHIP/$role/export/generator.json" $W/cdgan/$role/
      done
      # The super generator records the sub generator it was trained on: the shipped one.
      sed -i "s|\"sub_model\": \"$RUNS/$SHIP/sub\"|\"sub_model\": \"$W/cdgan/sub\"|" \
          $W/cdgan/super/generator.json ;;
    *) echo "unknown recipe $recipe" >&2; exit 2 ;;
  esac
done
