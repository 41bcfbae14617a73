#!/usr/bin/env bash
# The shipped scale-2 GANs (weights/imagenet/cdgan_scale2): the 1,000 + 600-step run of
# `SCALES=2 STEPS=1000 SUPER_STEPS=600 run_cdgan.sh gans` continued, in a copy
# ($WORK/runs/scale2_long), to sub 2,000 steps and super 1,500 steps (the super GAN
# continues on the continued sub generator's outputs; warm-ups stay 500 / 300 steps; the
# changes are recorded in each run's config_history.json), then evaluated on the test
# split (9/255 and 10/255 sets, every defense) and with the adaptive attacks, like
# run_cdgan.sh, and shipped. Resumable. Same environment as run_cdgan.sh (WORK, SHARED,
# PY, NICE).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${WORK:-/work/scratch/imagenet}
SHARED=${SHARED:-../shared}
PY=${PY:-.venv/bin/python}
RUN="nice -n ${NICE:-5} $PY"
VAL=$SHARED/datasets/imagenet_val_sample
TFLITE=$SHARED/models/tflite
V2=$TFLITE/mobilenet_v2_1.0_224_quant.tflite
TARGETS=$V2,$TFLITE/mobilenet_v1_0.5_160_quant.tflite,$TFLITE/mobilenet_v1_0.25_128_quant.tflite
RUNS=$WORK/runs/scale2_long
[ -d "$RUNS" ] || cp -r "$WORK/runs/scale2" "$RUNS"
GAN_FLAGS=(--train_records="$WORK/records_*/train-*" --val_records="$WORK/records_*/val-*"
           --image_size=256 --scale=2 --batch_size=8 --num_res_blocks=8 --filters=32
           --discriminator_filters=16 --image_skip --content_loss=l1 --adversarial_weight=1e-4
           --feature_extractor="$TFLITE/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
           --feature_weight=0.2 --summary_every=50 --checkpoint_every=250 --eval_every=500
           --eval_steps=10 --seed=0 --allow_config_change)
$RUN train_sub.py "${GAN_FLAGS[@]}" --model_dir="$RUNS/sub" --train_steps=2000 --warmup_steps=500
$RUN train_super.py "${GAN_FLAGS[@]}" --model_dir="$RUNS/super" --sub_model="$RUNS/sub" \
    --train_steps=1500 --warmup_steps=300
EVAL_FLAGS=(--clean_dir="$VAL" --labels="$VAL/val.txt" --crop=damagenet --center_crop=1.0
            --sub_model="$RUNS/sub" --super_model="$RUNS/super")
out=$WORK/results/cdgan_scale2_long
[ -f "$out/results.json" ] || $RUN evaluate.py "${EVAL_FLAGS[@]}" --classifiers="$TARGETS" \
    --batch_size=32 --adversarial_dir="$WORK/adv_val" --max_images=650 \
    --defenses=cdgan,sub_only,super_only,resize,jpeg75,median3 --output_dir="$out"
out=$WORK/results/cdgan_scale2_long_eps10  # run_cdgan.sh stronger made the 10/255 set
[ -f "$out/results.json" ] || $RUN evaluate.py "${EVAL_FLAGS[@]}" --classifiers="$TARGETS" \
    --batch_size=32 --adversarial_dir="$WORK/adv_val_test_eps10" --max_images=650 \
    --defenses=cdgan,resize,jpeg75,median3 --output_dir="$out"
out=$WORK/results/adaptive_scale2_long
[ -f "$out/results.json" ] || $RUN evaluate.py "${EVAL_FLAGS[@]}" --classifiers="$V2" \
    --defenses=cdgan,resize,jpeg75 --attack=pgd_classifier,pgd_defended,bpda --eps=4/255 \
    --steps=10 --max_images=100 --batch_size=20 --num_samples=0 --output_dir="$out"
for role in sub super; do
  cp "$RUNS/$role/export/generator.keras" "$RUNS/$role/export/generator.json" \
     weights/imagenet/cdgan_scale2/$role/
done
sed -i "s|\"sub_model\": \"[^\"]*\"|\"sub_model\": \"weights/imagenet/cdgan_scale2/sub\"|" \
    weights/imagenet/cdgan_scale2/super/generator.json
