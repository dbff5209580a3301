#!/bin/sh
# Create the virtual environment; on a bare Debian, install python3-venv first.
set -eu
python=${1:-python3}
venv=${2:-.venv}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "migtune needs Python 3.11 or newer ($python is $("$python" --version 2>&1))" >&2
    exit 1
fi
if ! "$python" -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    echo "python venv module missing: installing Debian package python3-venv" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
    "$python" -m venv "$venv"
fi
