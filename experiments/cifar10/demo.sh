#!/usr/bin/env bash
# `make demo`: the built-in default, on CIFAR-10 with the shipped weights.
#   1. CIFAR-10 test images: the built-in sample (experiments/cifar10/sample, 500 images,
#      nothing to download); DEMO_DATA=shared|tfds|<folder> (or CDGAN_DATA_DIR) for more;
#   2. a DAmageNet-style transfer set of them with the shipped VGG surrogate (MI-FGSM,
#      eps 16/255);
#   3. the shipped CD-GAN and the cheap baselines against the shipped ResNet-v2,
#      MobileNet-v2 and Inception classifiers: the table, results.json / results.md /
#      accuracy.png / samples.png / predictions.csv;
#   4. the defended ResNet-v2 as one SavedModel (what a user would serve).
# Environment: DEMO_DATA, DEMO_IMAGES (default 500), DEMO_OUTPUT (default results/demo),
# PY. Add --verbose to any command for TensorFlow's logs.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=${DEMO_OUTPUT:-results/demo}
IMAGES=${DEMO_IMAGES:-500}
W=weights/cifar10
start=$(date +%s)
DATA=$($PY experiments/cifar10/find_cifar10.py ${DEMO_DATA:+--data_dir="$DEMO_DATA"})
echo "CD-GAN demo: $IMAGES CIFAR-10 test images from $DATA -> $OUT"
mkdir -p "$OUT"
echo "[1/3] transfer attack on the VGG surrogate (MI-FGSM, eps 16/255)"
$PY -m tfrecords_builder.transfer_set --clean_dir="$DATA/test" --surrogate=$W/vgg_surrogate.keras \
    --algorithm=mifgsm --eps=16/255 --steps=10 --diversity_prob=0.5 --seed=0 --batch_size=100 \
    --max_images="$IMAGES" --output_dir="$OUT/adversarial"
echo "[2/3] CD-GAN and baselines in front of three classifiers"
$PY evaluate.py --clean_dir="$DATA/test" --adversarial_dir="$OUT/adversarial" \
    --classifiers=$W/resnet_v2.keras,$W/mobilenet_v2.keras,$W/inception.keras \
    --sub_model=$W/cdgan/sub --super_model=$W/cdgan/super \
    --defenses=cdgan,resize,jpeg75,bits4,median3 --batch_size=100 --max_images="$IMAGES" \
    --output_dir="$OUT" > "$OUT/evaluate.log"
# The sample grid: a spread of classes, CD-GAN's successes and failures, class names.
$PY -m experiments.cifar10.demo_samples --clean_dir="$DATA/test" \
    --adversarial_dir="$OUT/adversarial" --classifier=$W/resnet_v2.keras \
    --purifier=$W/cdgan --max_images="$IMAGES" --output="$OUT/samples.png" > /dev/null
echo "[3/3] the defended ResNet-v2 as a SavedModel"
$PY export_defended.py --sub_model=$W/cdgan/sub --super_model=$W/cdgan/super \
    --classifier=$W/resnet_v2.keras --export_dir="$OUT/exported/cdgan_resnet_v2" --overwrite \
    > /dev/null
echo
cat "$OUT/results.md"
echo
echo "Done in $(( $(date +%s) - start )) s. Files in $OUT:"
echo "  results.md, results.json   the tables above"
echo "  accuracy.png               clean and adversarial accuracy per defense and classifier"
echo "  samples.png                clean | adversarial | after sub G | after super G, for a"
echo "                             spread of classes, right and wrong behind CD-GAN (ResNet-v2)"
echo "  predictions.csv            one row per image, classifier and condition"
echo "  adversarial/               the transfer set (attack_manifest.json: RMSD, L-inf)"
echo "  exported/cdgan_resnet_v2   the defended SavedModel (saved_model_cli show --dir ... --all)"
