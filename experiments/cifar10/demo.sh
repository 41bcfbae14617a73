#!/usr/bin/env bash
# `make demo`: the built-in default, on CIFAR-10 with the shipped weights.
#   1. finds CIFAR-10 (--data_dir / CDGAN_DATA_DIR / ../shared/datasets/cifar10 / TFDS);
#   2. builds a DAmageNet-style transfer set for a sample of the test split with the
#      shipped VGG surrogate (MI-FGSM, eps 16/255);
#   3. evaluates the shipped CD-GAN and the cheap baselines against the shipped
#      ResNet-v2, MobileNet-v2 and Inception classifiers; prints the table and writes
#      results.json / results.md / accuracy.png / samples.png / predictions.csv;
#   4. exports the defended SavedModels and the purifier.
# Environment: DEMO_IMAGES (default 500), DEMO_OUTPUT (default results/demo), PY.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=${DEMO_OUTPUT:-results/demo}
IMAGES=${DEMO_IMAGES:-500}
W=weights/cifar10
DATA=$($PY experiments/cifar10/find_cifar10.py ${CDGAN_DATA_ARG:-})
echo "CIFAR-10 test images from $DATA; $IMAGES images; results in $OUT"
mkdir -p "$OUT"
$PY -m tfrecords_builder.attack --clean_dir="$DATA/test" --surrogate=$W/vgg_surrogate.keras \
    --attack=mifgsm --eps=16/255 --steps=10 --diversity_prob=0.5 --seed=0 --batch_size=100 \
    --max_images="$IMAGES" --output_dir="$OUT/adversarial"
$PY evaluate.py --clean_dir="$DATA/test" --adversarial_dir="$OUT/adversarial" \
    --classifiers=$W/resnet_v2.keras,$W/mobilenet_v2.keras,$W/inception.keras \
    --sub_model=$W/cdgan/sub --super_model=$W/cdgan/super \
    --defenses=cdgan,resize,jpeg75,bits4,median3 --batch_size=100 \
    --output_dir="$OUT" --export_dir="$OUT/exported" --overwrite
