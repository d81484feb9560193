#!/usr/bin/env bash
# Installs what warmup needs on Debian 12 (as root): Debian packages, and a Python virtualenv
# outside the checkout (default ~/.cache/warmup/venv, override with WARMUP_VENV) holding the torch
# wheel that provides LibTorch. Idempotent: a second run checks and returns in seconds.
#
#   scripts/setup.sh          # what building and running need
#   scripts/setup.sh --test   # also the test-time Python packages (pytest, oracles)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${WARMUP_VENV:-$HOME/.cache/warmup/venv}"
reqs="$here/requirements.txt"
[[ "${1:-}" == "--test" ]] && reqs="$here/requirements-test.txt"

packages=(build-essential cmake ninja-build pkg-config git ca-certificates sqlite3 libsqlite3-dev
  libboost-dev libboost-program-options-dev libboost-filesystem-dev libtomlplusplus-dev
  libspdlog-dev libfmt-dev doctest-dev nlohmann-json3-dev libpcre2-dev libutf8proc-dev
  libcpp-httplib-dev libssl-dev bubblewrap util-linux libgloo-dev
  python3 python3-venv python3-pip python3-numpy libjs-chart.js)
# libgloo-dev: headers only (ProcessGroupGloo.hpp includes them); Gloo itself is inside libtorch_cpu.
# libjs-chart.js: `warmup report` inlines Chart.js from it (without it, curves are tables).
# The tests also load reports in a real browser (headless Chromium, with fonts for screenshots).
[[ "${1:-}" == "--test" ]] && packages+=(chromium fonts-dejavu-core)
# python3-numpy: /usr/bin/python3 is the default interpreter of the HumanEval+ checks (rewards
# humaneval_*, `warmup score/eval --task humaneval_plus`), whose comparisons need numpy; the
# reward refuses to start without it rather than score every completion wrong.
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup: creating virtualenv $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
fi
# Reinstall only when the requirement files change (stamp = their hash).
stamp="$venv/.warmup-$(basename "$reqs" .txt).sha256"
want="$(cat "$here"/requirements*.txt | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "setup: installing Python packages from $(basename "$reqs") (torch wheel: a few GB, first time only)"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r "$reqs"
  echo "$want" > "$stamp"
fi
"$venv/bin/python" -c "import torch; assert torch.__version__.startswith('2.11'), torch.__version__" \
  || { echo "setup: torch 2.11.x expected in $venv" >&2; exit 1; }
