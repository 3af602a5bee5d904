# `make demo`: set everything up, then encode/decode held-out speech with the shipped model,
#              print bitrate and quality, and generate the hardware.
# `make test`: set everything up, then run the test suite (what CI runs).
PYTHON ?= python3

.PHONY: install demo test test-all report bitstreams

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

# the committed bitstreams of the shipped model (one command per board: cascade synth --board B)
bitstreams: install
	cascade synth --board icebreaker --cores encoder --clock 20.25 --flash-boot   # PLL clock: pays for the model's 96-trial search (cascade set-search); weights from the SPI flash
	cascade synth --board icebreaker --cores decoder --flash-boot   # one bitstream per core: icebreaker-encoder/, icebreaker-decoder/
	cascade synth --board ulx3s-85f --search 1 --search-candidates 32   # the wider search, chosen on the validation voice (docs/RESULTS.md)
	cascade synth --board ulx3s-25f
	cascade synth --board ulx3s-85f --model model/large/model.pt --cores encoder --out bitstreams/ulx3s-85f-large-encoder
	cascade synth --board ulx3s-85f --model model/large/model.pt --cores decoder --out bitstreams/ulx3s-85f-large-decoder
