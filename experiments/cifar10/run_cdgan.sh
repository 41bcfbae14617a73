#!/usr/bin/env bash
# The scaled-down CD-GAN experiment on real CIFAR-10, end to end, resumable:
#   1. classifiers (targets + surrogate)      experiments/cifar10/train_classifiers.py
#   2. DAmageNet-style transfer sets           python -m tfrecords_builder.attack
#   3. paired TFRecords                        python -m tfrecords_builder
#   4. sub and super GANs at 32 / scale 2      train_sub.py, train_super.py
#   5. Table 1 on the test split + baselines   evaluate.py
#   6. white-box / adaptive attacks at 8/255   evaluate.py --attack=...
# Every step skips work that is already done, so the script can be rerun after an
# interruption. Usage (from the repo root):
#   bash experiments/cifar10/run_cdgan.sh [STEP...]     # default: all steps
# Environment: CDGAN_DATA_DIR (CIFAR-10 class folders; default ../shared/datasets/cifar10),
# WORK (scratch; default /tmp/cdgan_cifar), TRAIN_IMAGES (attacked training images,
# default 10000), GAN_STEPS (default 2000), PY (python; default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DATA=${CDGAN_DATA_DIR:-../shared/datasets/cifar10}
WORK=${WORK:-/tmp/cdgan_cifar}
WEIGHTS=weights/cifar10
TRAIN_IMAGES=${TRAIN_IMAGES:-10000}
GAN_STEPS=${GAN_STEPS:-2000}
ATTACK_FLAGS=(--attack=mifgsm --eps=16/255 --steps=10 --diversity_prob=0.5 --seed=0
              --batch_size=100 --log_every=1000)
TARGETS="$WEIGHTS/resnet_v2.keras,$WEIGHTS/mobilenet_v2.keras,$WEIGHTS/inception.keras"
GAN_FLAGS=(--image_size=32 --scale=2 --batch_size=16 --num_res_blocks=8 --filters=64
           --image_skip --content_loss=l1
           --adversarial_weight=1e-4 --summary_every=100 --checkpoint_every=500
           --eval_every=500 --eval_steps=20 --seed=0)
STEPS=${*:-classifiers attack records gans evaluate adaptive}
mkdir -p "$WORK"

for step in $STEPS; do
  echo "=== $step ($(date -u +%H:%M:%S))"
  case $step in
    classifiers)
      $PY experiments/cifar10/train_classifiers.py --data_dir="$DATA" --output_dir=$WEIGHTS ;;
    attack)
      $PY -m tfrecords_builder.attack --clean_dir="$DATA/train" \
          --surrogate=$WEIGHTS/vgg_surrogate.keras "${ATTACK_FLAGS[@]}" \
          --max_images="$TRAIN_IMAGES" --output_dir="$WORK/adv_train"
      $PY -m tfrecords_builder.attack --clean_dir="$DATA/test" \
          --surrogate=$WEIGHTS/vgg_surrogate.keras "${ATTACK_FLAGS[@]}" \
          --output_dir="$WORK/adv_test" ;;
    records)
      [ -f "$WORK/records/manifest.json" ] || $PY -m tfrecords_builder \
          --adversarial_dir="$WORK/adv_train" --clean_dir="$DATA/train" \
          --output_dir="$WORK/records" --val_fraction=0.05 --workers=2 ;;
    gans)
      for role in sub super; do
        $PY train_$role.py --train_records="$WORK/records/train-*" \
            --val_records="$WORK/records/val-*" --model_dir="$WORK/runs/$role" \
            --train_steps="$GAN_STEPS" --warmup_steps=$((GAN_STEPS / 2)) "${GAN_FLAGS[@]}"
      done ;;
    evaluate)
      $PY evaluate.py --clean_dir="$DATA/test" --adversarial_dir="$WORK/adv_test" \
          --classifiers="$TARGETS" --sub_model="$WORK/runs/sub" --super_model="$WORK/runs/super" \
          --defenses=cdgan,resize,jpeg75,bits4,median3,sub_only,super_only \
          --batch_size=100 --max_images="${EVAL_IMAGES:-2000}" --output_dir="$WORK/results/transfer" ;;
    adaptive)
      $PY evaluate.py --clean_dir="$DATA/test" --classifiers="$TARGETS" \
          --sub_model="$WORK/runs/sub" --super_model="$WORK/runs/super" \
          --defenses=cdgan,resize,jpeg75 --attack=pgd_classifier,pgd_defended,bpda \
          --eps=8/255 --steps=10 --max_images="${ADAPTIVE_IMAGES:-300}" --batch_size=100 \
          --output_dir="$WORK/results/adaptive" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
