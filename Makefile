# `make demo`: set everything up, then encode/decode held-out speech with the shipped model,
#              print bitrate and quality, and generate the hardware.
# `make test`: set everything up, then run the test suite (what CI runs).
PYTHON ?= python3

.PHONY: install demo test test-all report

install:
	./scripts/install.sh

demo: install
	cascade demo

test: install
	$(PYTHON) -m pytest

test-all: install
	$(PYTHON) -m pytest -m ""

report: install
	cascade report --out docs/report
