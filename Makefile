# modgate: `make demo` runs the gateway on embedded defaults, `make test` runs every check.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
NETNS := tools/netns
PYTEST_ARGS ?=

.PHONY: setup lint test test-python test-micropython demo bench dist clean

setup:
	@bash tools/setup.sh

lint: setup
	$(VENV)/bin/ruff check firmware host boards tests tools
	$(PY) tools/lint_firmware.py
	$(VENV)/bin/mypy

# Unit (CPython), host and end-to-end tests in one pytest run, inside a private loopback-only
# network namespace so every peer (dcmtk, Orthanc, pynetdicom) is reachable from 127.0.0.1 only.
test-python: setup
	$(NETNS) $(PY) -m pytest $(PYTEST_ARGS)

test-micropython: setup
	$(NETNS) $(PY) tools/mptest.py

test: lint test-python test-micropython
	@echo "runtimes exercised: cpython (unit, host, e2e drivers), micropython x86-64 $$($(VENV)/bin/micropython -c 'import sys; print(sys.version)'), armhf $$(cat .toolchain/sysroot-armhf.stamp) under qemu-arm; devices: firmware images (MicroPython 1.25.0, firmware frozen) x86-64, armhf under qemu-arm, bare-metal Cortex-M3 (qemu port) under qemu-system-arm"

demo: setup
	$(NETNS) $(PY) tools/demo.py $(if $(PACS),--pacs $(PACS)) $(if $(BOARD),--board $(BOARD))

# Benchmarks are tools, not timed tests: each prints a table for docs/benchmarks.md.
bench: setup
	$(PY) tools/bench_footprint.py
	$(PY) tools/bench_encode.py
	$(NETNS) $(PY) tools/bench_send.py
	$(NETNS) $(PY) tools/bench_ingest.py --stage archive
	$(NETNS) $(PY) tools/bench_ingest.py --stage during-send --runtime micropython
	$(NETNS) $(PY) tools/bench_ingest.py --stage during-send --runtime qemu-armhf --big-mb 64 --archive-mbps 10

# The host's wheel and sdist, firmware, boards, docs and image tools inside (README, "Installing").
dist: setup
	$(PY) -m build --no-isolation --outdir dist .

clean:
	rm -rf out build dist .pytest_cache .mypy_cache .ruff_cache
