#!/usr/bin/env bash
# The shipped scale-2 GANs (weights/imagenet/cdgan_scale2): the 1,000 + 600-step run of
# `SCALES=2 STEPS=1000 SUPER_STEPS=600 run_cdgan.sh gans` continued, in a copy
# ($WORK/runs/scale2_long), to sub 2,000 steps and super 1,500 steps (the super GAN
# continues on the continued sub generator's outputs; warm-ups stay 500 / 300 steps; the
# changes are recorded in each run's config_history.json), then evaluated on the test
# split (9/255 and 10/255 sets) and with the adaptive attacks, and shipped — all by
# run_cdgan.sh with RUN_TAG=_long. Resumable. Same environment as run_cdgan.sh (WORK,
# SHARED, PY, NICE).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${WORK:-/work/scratch/imagenet}
[ -d "$WORK/runs/scale2_long" ] || cp -r "$WORK/runs/scale2" "$WORK/runs/scale2_long"
WORK=$WORK SCALES=2 RUN_TAG=_long STEPS=2000 SUPER_STEPS=1500 WARMUP=500 SUPER_WARMUP=300 \
    ALLOW_CONFIG_CHANGE=1 bash experiments/imagenet/run_cdgan.sh \
    gans evaluate stronger adaptive ship
