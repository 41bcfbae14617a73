#!/usr/bin/env bash
# CD-GAN at the paper's geometry on real ImageNet images, end to end, resumable:
#   transfer  the DAmageNet-style transfer set (make_transfer_set.sh: MobileNet-v1 0.75
#             surrogate, MI-FGSM eps 9/255, 40 steps, input diversity 1.0)
#   records   paired TFRecords of the train images only: the 650 val-sample images
#             outside the test split (--holdout_subset=650) and the 1,000 class samples,
#             clean side prepared as DAmageNet did (--crop=damagenet)
#   gans      sub and super GAN for each SCALES entry (256 -> 256/scale -> 256)
#   evaluate  the test split (650 val images) against the real TFLite MobileNet-v2 (the
#             paper's classifier) and MobileNet-v1 0.5 / 0.25: normal, attack, CD-GAN and
#             the baselines / ablations
#   adaptive  pgd_classifier, pgd_defended, bpda at eps 4/255 through the float rebuild,
#             on ADAPTIVE_IMAGES test images
#   stronger  the test split only, attacked again with the same recipe at STRONG_EPS
#             (default 10/255: the next setting of the search, the one that meets the
#             <= 20 % target) and evaluated like `evaluate` (the GANs keep their 9/255
#             training pairs: a budget they were not trained on)
#   ship      copies the generators of each SCALES entry to weights/imagenet/: scale 4
#             (the paper's) to cdgan/{sub,super}, scale N to cdgan_scaleN/{sub,super}
#
# Roles: surrogate MobileNet-v1 0.75 (attack only); feature network the MobileNet-v1 1.0
# embedding extractor (training only, neither a target nor the surrogate); targets
# MobileNet-v2 1.0, v1 0.5, v1 0.25 (all real quantized TFLite models, scored by the
# interpreter). The test split is never used for training or for choosing settings.
#
# Usage (from the repo root): bash experiments/imagenet/run_cdgan.sh [STEP...]
#   default: transfer records gans evaluate adaptive ship   (stronger only on request)
# Environment: WORK (default /work/scratch/imagenet), SHARED (../shared), PY, SCALES
# (default "4 2"), STRONG_EPS (10/255), STEPS (GAN steps, default 3000), SUPER_STEPS (the super GAN's, default
# STEPS: its 256-px output and discriminator make its steps ~3x the sub GAN's), WARMUP and
# SUPER_WARMUP (content-only warm-up steps, default half of STEPS / SUPER_STEPS),
# RUN_TAG (suffix of the run and result folders, e.g. "_long": $WORK/runs/scale2_long),
# ALLOW_CONFIG_CHANGE (1: continue runs with changed settings, recorded in each run's
# config_history.json), BATCH (8), BLOCKS (8), FILTERS (32),
# D_FILTERS (16), FEATURE_WEIGHT (default 0.2), ADAPTIVE_IMAGES (100), TRAIN_SETS (the
# pair sets the GANs train on: "val class" (default) or "val" = the 650 train val images
# only, for when the class-sample transfer set is not there yet).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${WORK:-/work/scratch/imagenet}
SHARED=${SHARED:-../shared}
PY=${PY:-.venv/bin/python}
RUN="nice -n ${NICE:-5} $PY"
SCALES=${SCALES:-4 2}
STEPS=${STEPS:-3000}
SUPER_STEPS=${SUPER_STEPS:-$STEPS}
WARMUP=${WARMUP:-$((STEPS / 2))}
SUPER_WARMUP=${SUPER_WARMUP:-$((SUPER_STEPS / 2))}
RUN_TAG=${RUN_TAG:-}
BATCH=${BATCH:-8}
FEATURE_WEIGHT=${FEATURE_WEIGHT:-0.2}
ADAPTIVE_IMAGES=${ADAPTIVE_IMAGES:-100}
STRONG_EPS=${STRONG_EPS:-10/255}
VAL=$SHARED/datasets/imagenet_val_sample
CLASS=$SHARED/datasets/imagenet_class_samples
TFLITE=$SHARED/models/tflite
FEATURE_NET=$TFLITE/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite
TARGETS=$TFLITE/mobilenet_v2_1.0_224_quant.tflite,$TFLITE/mobilenet_v1_0.5_160_quant.tflite,$TFLITE/mobilenet_v1_0.25_128_quant.tflite
TEST_IMAGES=650
TRAIN_SETS=${TRAIN_SETS:-val class}
if [ "$TRAIN_SETS" = val ]; then RECORDS=$WORK/records_val; else RECORDS="$WORK/records_*"; fi
GAN_FLAGS=(--train_records="$RECORDS/train-*" --val_records="$RECORDS/val-*"
           --image_size=256 --batch_size="$BATCH" --num_res_blocks="${BLOCKS:-8}"
           --filters="${FILTERS:-32}" --discriminator_filters="${D_FILTERS:-16}" --image_skip
           --content_loss=l1 --adversarial_weight=1e-4 --feature_extractor="$FEATURE_NET"
           --feature_weight="$FEATURE_WEIGHT" --summary_every=50 --checkpoint_every=250
           --eval_every=500 --eval_steps=10 --seed=0
           ${ALLOW_CONFIG_CHANGE:+--allow_config_change})
EVAL_FLAGS=(--clean_dir="$VAL" --labels="$VAL/val.txt" --crop=damagenet --center_crop=1.0
            --classifiers="$TARGETS" --batch_size=32)
RECIPE_STEPS=${*:-transfer records gans evaluate adaptive ship}

for step in $RECIPE_STEPS; do
  echo "=== $step ($(date -u +%H:%M:%S))"
  case $step in
    transfer)
      WORK=$WORK SHARED=$SHARED PY=$PY bash experiments/imagenet/make_transfer_set.sh \
          split attack ;;
    records)
      [ -f "$WORK/records_val/manifest.json" ] || $RUN -m tfrecords_builder \
          --adversarial_dir="$WORK/adv_val" --clean_dir="$VAL" --labels="$VAL/val.txt" \
          --crop=damagenet --holdout_subset=$TEST_IMAGES --val_fraction=0.05 --workers=2 \
          --output_dir="$WORK/records_val"
      [ "$TRAIN_SETS" = val ] || [ -f "$WORK/records_class/manifest.json" ] || \
        $RUN -m tfrecords_builder \
          --adversarial_dir="$WORK/adv_class" --clean_dir="$CLASS" \
          --labels="$CLASS/labels.txt" --crop=damagenet --val_fraction=0.05 --workers=2 \
          --output_dir="$WORK/records_class" ;;
    gans)  # Recipe: feature loss on the embedding network, super GAN chained on sub G.
      for scale in $SCALES; do
        runs=$WORK/runs/scale$scale$RUN_TAG
        $RUN train_sub.py "${GAN_FLAGS[@]}" --scale="$scale" --model_dir="$runs/sub" \
            --train_steps="$STEPS" --warmup_steps="$WARMUP"
        $RUN train_super.py "${GAN_FLAGS[@]}" --scale="$scale" --model_dir="$runs/super" \
            --sub_model="$runs/sub" --train_steps="$SUPER_STEPS" \
            --warmup_steps="$SUPER_WARMUP"
      done ;;
    evaluate)
      for scale in $SCALES; do
        runs=$WORK/runs/scale$scale$RUN_TAG out=$WORK/results/cdgan_scale$scale$RUN_TAG
        [ -f "$out/results.json" ] || $RUN evaluate.py "${EVAL_FLAGS[@]}" \
            --adversarial_dir="$WORK/adv_val" --sub_model="$runs/sub" \
            --super_model="$runs/super" --max_images=$TEST_IMAGES \
            --defenses=cdgan,resize,jpeg75,median3,sub_only,super_only --output_dir="$out"
      done ;;
    adaptive)
      for scale in $SCALES; do
        runs=$WORK/runs/scale$scale$RUN_TAG out=$WORK/results/adaptive_scale$scale$RUN_TAG
        [ -f "$out/results.json" ] || $RUN evaluate.py --clean_dir="$VAL" \
            --labels="$VAL/val.txt" --crop=damagenet --center_crop=1.0 \
            --classifiers="$TFLITE/mobilenet_v2_1.0_224_quant.tflite" \
            --sub_model="$runs/sub" --super_model="$runs/super" --defenses=cdgan,resize,jpeg75 \
            --attack=pgd_classifier,pgd_defended,bpda --eps=4/255 --steps=10 \
            --max_images="$ADAPTIVE_IMAGES" --batch_size=20 --num_samples=0 --output_dir="$out"
      done ;;
    stronger)
      tag=eps$(( ${STRONG_EPS%/255} ))
      $RUN -m tfrecords_builder.attack --surrogate="$TFLITE/mobilenet_v1_0.75_192_quant.tflite" \
          --clean_dir="$VAL" --labels="$VAL/val.txt" --attack=mifgsm --decay=1.0 \
          --crop=damagenet --seed=0 --batch_size=32 --log_every=320 --eps="$STRONG_EPS" \
          --steps=40 --diversity_prob=1.0 --max_images=$TEST_IMAGES \
          --output_dir="$WORK/adv_val_test_$tag"
      for scale in $SCALES; do
        runs=$WORK/runs/scale$scale$RUN_TAG out=$WORK/results/cdgan_scale$scale${RUN_TAG}_$tag
        [ -f "$out/results.json" ] || $RUN evaluate.py "${EVAL_FLAGS[@]}" \
            --adversarial_dir="$WORK/adv_val_test_$tag" --sub_model="$runs/sub" \
            --super_model="$runs/super" --max_images=$TEST_IMAGES \
            --defenses=cdgan,resize,jpeg75,median3 --output_dir="$out"
      done ;;
    ship)  # Scale 4 (the paper's) to weights/imagenet/cdgan, others to cdgan_scale<N>.
      for scale in $SCALES; do
        dest=weights/imagenet/cdgan
        [ "$scale" = 4 ] || dest=weights/imagenet/cdgan_scale$scale
        for role in sub super; do
          mkdir -p $dest/$role
          cp "$WORK/runs/scale$scale$RUN_TAG/$role/export/generator.keras" \
             "$WORK/runs/scale$scale$RUN_TAG/$role/export/generator.json" $dest/$role/
        done
        # The super generator records the sub generator it was trained on: the shipped one.
        sed -i "s|\"sub_model\": \"[^\"]*\"|\"sub_model\": \"$dest/sub\"|" \
            $dest/super/generator.json
      done ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
