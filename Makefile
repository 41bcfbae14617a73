# One command sets up a fresh machine and runs the tests: `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The built-in default: transfer attack + CD-GAN + baselines on CIFAR-10 with the shipped
# weights (< 5 minutes on a 2-core CPU); results in results/demo.
demo: $(STAMP)
	PY=$(PY) bash experiments/cifar10/demo.sh

# The whole suite, in two pytest-xdist workers (the tests are mostly single-threaded
# process start-ups and small graphs: two workers on this 2-core CPU ran the 564 tests in
# 1,714 s against 3,636 s in one process, both on a machine loaded by other jobs, 2026-12-06).
# PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -ra -n $(PYTEST_WORKERS) --dist worksteal

# Everything except tests marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -q -ra -n $(PYTEST_WORKERS) --dist worksteal -m "not slow"

# Every benchmark with fast-enough settings, each writing its figures as JSON to
# $(BENCH_DIR)/<name>.json (about 7 minutes on a busy 2-core CPU). Only ratios measured in
# the same run are comparable across runs; see README "Throughput".
BENCH_DIR ?= results/bench
BENCH := nice -n 5 $(PY) benchmarks
bench: $(STAMP)
	mkdir -p $(BENCH_DIR)
	$(BENCH)/model_size.py --output_json=$(BENCH_DIR)/model_size.json
	$(BENCH)/purifier_inference.py --repeats=3 --batch_sizes=1,2,4,8,16 \
	    --output_json=$(BENCH_DIR)/purifier_inference.json
	$(BENCH)/tflite_purifier.py --repeats=5 --output_json=$(BENCH_DIR)/tflite_purifier.json
	$(BENCH)/serve_throughput.py --output_json=$(BENCH_DIR)/serve_throughput.json
	$(BENCH)/tflite_rebuild.py --models=mobilenet_v1_0.25_128_quant,mobilenet_v2_1.0_224_quant \
	    --repeats=5 --output_json=$(BENCH_DIR)/tflite_rebuild.json
	$(BENCH)/train_throughput.py --steps=200 --num_res_blocks=8 --filters=32 \
	    --discriminator_filters=32 --output_json=$(BENCH_DIR)/train_throughput.json
	$(BENCH)/train_throughput.py --image_size=256 --scale=2 --steps=10 --warmup=2 \
	    --num_res_blocks=8 --filters=32 --discriminator_filters=32 --summary_every=10 \
	    --examples=32 --output_json=$(BENCH_DIR)/train_throughput_256.json
	$(BENCH)/pair_generation.py --repeats=3 --batch_size=8 --pipeline_images=24 \
	    --output_json=$(BENCH_DIR)/pair_generation.json
	$(BENCH)/attack_cpu_settings.py --rounds=2 --output_json=$(BENCH_DIR)/attack_cpu_settings.json
	$(BENCH)/train_throughput.py --image_size=256 --scale=2 --examples=4 --discriminator_filters=32 \
	    --bare_variants=8x32,16x64 --bare_batch_size=1 --bare_steps=1 --profile \
	    --bare_feature_extractor=../shared/models/tflite/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite \
	    --output_json=$(BENCH_DIR)/train_throughput_bare_256.json
	$(BENCH)/mixed_precision.py --output_json=$(BENCH_DIR)/mixed_precision.json
	$(BENCH)/gan_sizing.py --steps=10 --output_json=$(BENCH_DIR)/gan_sizing.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
