#!/usr/bin/env bash
# Re-resolve one lane from pyproject's ranges in a fresh venv, run the whole suite there, and only if it passes write
# the exact versions into the lane's lock file. Usage: lock.sh VENV LOCKFILE EXTRAS PIN...
set -euo pipefail
venv=$1 lock=$2 extras=$3
shift 3
rm -rf "$venv"
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "$@" -e ".[$extras]"
HF_HUB_OFFLINE=1 "$venv/bin/python" -m pytest -q
tmp=$(mktemp "$lock.XXXXXX")
{
  echo "# Lock of the lane installed with: pip install $* -e \".[$extras]\""
  echo "# Every package that install resolved, at the exact version with which the whole suite passed on $(date -u +%F)."
  echo "# Not package requirements (pyproject.toml keeps ranges for users). Regenerate: make $( [ "$lock" = constraints.txt ] && echo lock || echo lock-full )."
  # local version labels (+cpu, +cu130) are dropped: '==X' matches 'X+label', and the wheels are found by version
  "$venv/bin/python" -m pip freeze --exclude-editable | sed -E 's/^([A-Za-z0-9_.-]+==[^+]+)\+.*$/\1/'
} > "$tmp"
mv "$tmp" "$lock"
echo "wrote $lock ($(grep -c '==' "$lock") pins)"
