#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine: the simulator, the real speech
# used for training/testing, the reference codecs for comparisons, and the Python package.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if command -v apt-get >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq iverilog pocketsphinx-testdata opus-tools ffmpeg espeak-ng sox \
    flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
    asterisk-core-sounds-en-g722 asterisk-core-sounds-es-g722 asterisk-core-sounds-it-g722 \
    asterisk-core-sounds-fr-g722 >/dev/null
fi
python3 -m pip install -q -e ".[test]"
