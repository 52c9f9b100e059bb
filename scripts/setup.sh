#!/usr/bin/env bash
# Set up geodemo on this machine: Debian packages (when root/apt is available), a virtual
# environment in .venv and every Python requirement. Safe to run again: it installs only what
# is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(
  chromium                      # browser tests of the web app (Playwright drives it)
  fonts-noto-core fonts-noto-cjk  # glyphs for OCR test images in several scripts
  tesseract-ocr tesseract-ocr-eng tesseract-ocr-rus tesseract-ocr-ara tesseract-ocr-chi-sim
  tesseract-ocr-hin tesseract-ocr-jpn tesseract-ocr-kor tesseract-ocr-ell tesseract-ocr-heb
  tesseract-ocr-tha tesseract-ocr-deu tesseract-ocr-fra tesseract-ocr-spa
)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "note: not root, skipping Debian packages (browser and OCR tests will skip): ${missing[*]}" >&2
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -r requirements-dev.txt
echo "geodemo is set up in .venv"
