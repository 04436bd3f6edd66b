#!/usr/bin/env bash
# Free-threaded CPython (PEP 703) as a measured target: build 3.13.5t once, reuse it.
#
#   bash benchmarks/freethreaded.sh build   # build (or reuse) 3.13.5t and its venv
#   bash benchmarks/freethreaded.sh test    # unit suite + MariaDB/PyMySQL suite, GIL asserted off
#   bash benchmarks/freethreaded.sh bench   # S1 scaling table (fake driver) + S2 at 0 ms (MariaDB)
#   bash benchmarks/freethreaded.sh all     # the three above, in order (default)
#
# Why a script: no package registry here ships a free-threaded interpreter, and a build
# takes 10-20 minutes on 2 cores, so the build is cached and every later step reuses it.
#
# Where the source comes from: Debian trixie's python3.13 source package carries
# python3.13_3.13.5.orig.tar.xz, byte-identical to the upstream tarball pyenv expects. A
# deb-src line for trixie goes into its own sources file (removed again afterwards, with the
# index files it fetched), `apt-get source --download-only python3.13` fetches the package,
# the orig tarball is copied to $(pyenv root)/cache/Python-3.13.5.tar.xz, and
# `pyenv install 3.13.5t` (its recipe configures --disable-gil) builds from that cache.
#
# Cache: the interpreter lives in $(pyenv root)/versions/3.13.5t (pyenv's own cache of
# builds); the downloaded source and the venv live in $FPP_FT_CACHE
# (default: ${XDG_CACHE_HOME:-~/.cache}/flask-peewee-pool/freethreaded). The venv is rebuilt
# when pyproject.toml changes.
#
# Database tests need FPP_POOL_USER set to an account name of your own (see tests/conftest.py).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)

FT_VERSION=3.13.5t
FT_UPSTREAM=3.13.5
PYENV_ROOT=$(pyenv root)
FT_PREFIX="$PYENV_ROOT/versions/$FT_VERSION"
FT_PY="$FT_PREFIX/bin/python3.13t"
FT_CACHE=${FPP_FT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flask-peewee-pool/freethreaded}
FT_VENV="$FT_CACHE/venv"
FT_OUT=${FPP_FT_OUT:-$REPO/benchmarks/results/freethreaded}
SOURCES_FILE=/etc/apt/sources.list.d/fpp-trixie-src.sources
# What the unit and integration suites and the scaling benchmark import, not the whole
# `test` extra (Django, gunicorn, testcontainers... are not run here). --prefer-binary:
# the newest hypothesis has a Rust part with no cp313t wheel, an older release is pure
# Python. psycopg without [binary]: its pure-Python layer over the system libpq.
# mysqlclient (a C extension) is tried separately: it is the test of the GIL check.
FT_PACKAGES=(pytest pytest-timeout hypothesis psycopg SQLAlchemy DBUtils Flask)

log() { printf '\n==> %s\n' "$*"; }
die() { printf '\nfreethreaded.sh: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); fi

is_free_threaded() {  # the interpreter exists and was configured with --disable-gil
    [ -x "$FT_PY" ] &&
        "$FT_PY" -c 'import sys, sysconfig; sys.exit(0 if sysconfig.get_config_var("Py_GIL_DISABLED") else 1)'
}

fetch_source() {  # -> $FT_CACHE/src/python3.13_3.13.5.orig.tar.xz
    local orig="$FT_CACHE/src/python3.13_${FT_UPSTREAM}.orig.tar.xz"
    if [ -s "$orig" ]; then echo "$orig"; return 0; fi
    mkdir -p "$FT_CACHE/src"
    log "fetching Debian trixie's python3.13 source package (deb-src in $SOURCES_FILE)" >&2
    local lists=/var/lib/apt/lists
    local before
    before=$(mktemp)
    ls "$lists" >"$before"
    printf '%s\n' \
        'Types: deb-src' \
        'URIs: http://deb.debian.org/debian' \
        'Suites: trixie' \
        'Components: main' \
        'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' |
        "${SUDO[@]}" tee "$SOURCES_FILE" >/dev/null
    local rc=0
    (
        # Only this one source is refreshed; the other index files are left as they are.
        "${SUDO[@]}" apt-get -q -o DPkg::Lock::Timeout=120 \
            -o Dir::Etc::sourcelist="$SOURCES_FILE" -o Dir::Etc::sourceparts=- \
            -o APT::Get::List-Cleanup=0 update &&
            cd "$FT_CACHE/src" &&
            apt-get -q -o Dir::Etc::sourcelist="$SOURCES_FILE" -o Dir::Etc::sourceparts=- \
                source --download-only python3.13
    ) </dev/null >&2 || rc=$?
    # Undo the system change whatever happened: the sources file and the index files the
    # update added (those not present before).
    "${SUDO[@]}" rm -f "$SOURCES_FILE"
    local f
    while read -r f; do
        grep -qxF "$f" "$before" || "${SUDO[@]}" rm -f "$lists/$f"
    done < <(ls "$lists")
    rm -f "$before"
    [ "$rc" -eq 0 ] || die "apt-get source python3.13 failed (exit $rc)"
    [ -s "$orig" ] || die "no $orig after apt-get source (got: $(ls "$FT_CACHE/src"))"
    echo "$orig"
}

build_python() {
    if is_free_threaded; then
        echo "reusing $FT_PY ($("$FT_PY" -VV | head -1))"
        return 0
    fi
    local orig
    orig=$(fetch_source)
    mkdir -p "$PYENV_ROOT/cache"
    cp -f "$orig" "$PYENV_ROOT/cache/Python-${FT_UPSTREAM}.tar.xz"
    log "pyenv install $FT_VERSION (10-20 minutes on 2 cores)"
    local t0=$SECONDS
    MAKE_OPTS="${MAKE_OPTS:--j$(nproc)}" pyenv install --skip-existing "$FT_VERSION" </dev/null
    echo "built in $(( SECONDS - t0 )) s"
    is_free_threaded || die "$FT_PY is missing or not free-threaded after the build"
}

build_venv() {
    local stamp="$FT_VENV/.fpp-installed"
    local want
    want="$(sha256sum "$REPO/pyproject.toml" | cut -c1-16) ${FT_PACKAGES[*]} $REPO"
    if [ -x "$FT_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        echo "reusing venv $FT_VENV"
        return 0
    fi
    log "venv on $FT_VERSION in $FT_VENV: ${FT_PACKAGES[*]}"
    rm -rf "$FT_VENV"
    "$FT_PY" -m venv "$FT_VENV"
    local pip=("$FT_VENV/bin/python" -m pip install --disable-pip-version-check -q --prefer-binary)
    "${pip[@]}" -e "$REPO" "${FT_PACKAGES[@]}"
    "${pip[@]}" mysqlclient || echo "mysqlclient did not build on $FT_VERSION: its test is skipped"
    "$FT_VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null >"$FT_VENV/pip-list.txt"
    echo "$want" >"$stamp"
}

cmd_build() {
    build_python
    build_venv
}

cmd_test() {
    cmd_build
    [ -n "${FPP_POOL_USER:-}" ] || die "export FPP_POOL_USER=<your own account name> first"
    log "unit suite + MariaDB/PyMySQL suite on $FT_VERSION, GIL asserted off"
    # FPP_REQUIRE_NOGIL=1: tests/conftest.py is not ours to edit, so the plugin below checks
    # the GIL at session start and again at the end (an extension imported by a test can
    # turn it back on) and names every module whose import re-enabled it.
    FPP_REQUIRE_DB=1 "$FT_VENV/bin/python" -m pytest -p benchmarks.nogil_check \
        -p no:cacheprovider -q tests/unit tests/integration "$@"
}

cmd_bench() {
    cmd_build
    mkdir -p "$FT_OUT"
    local py="$FT_VENV/bin/python"
    # The same build twice: GIL off (the default of a free-threaded build; scaling.py
    # records sys._is_gil_enabled() at start and end) and GIL forced on (PYTHON_GIL=1),
    # the control that shows what the GIL alone costs on the same interpreter.
    log "S1 scaling on $FT_VERSION, GIL off, then PYTHON_GIL=1 (fake driver)"
    env -u PYTHON_GIL "$py" -m benchmarks.scaling --out "$FT_OUT" --name s1-scaling-gil0.json \
        --markdown "$FT_OUT/s1-scaling-gil0.md" "$@"
    grep -q '"gil_enabled_at_end": false' "$FT_OUT/s1-scaling-gil0.json" ||
        die "the GIL came back on during the GIL-off scaling run (an extension module?)"
    PYTHON_GIL=1 "$py" -m benchmarks.scaling --out "$FT_OUT" --name s1-scaling-gil1.json \
        --markdown "$FT_OUT/s1-scaling-gil1.md" "$@"
    [ -n "${FPP_POOL_USER:-}" ] || die "export FPP_POOL_USER=<your own account name> first"
    log "S2 at 0 ms against MariaDB on $FT_VERSION, GIL off, then PYTHON_GIL=1"
    local gil
    for gil in 0 1; do
        # gil 0: PYTHON_GIL unset, so an extension that turns the GIL back on would show
        # in the results' "gil_enabled_at_end" (checked below), not be overridden.
        local env_gil=(env -u PYTHON_GIL)
        [ "$gil" -eq 0 ] || env_gil=(env PYTHON_GIL=1)
        "${env_gil[@]}" "$py" -m benchmarks s2 --latencies-ms 0 --out "$FT_OUT/s2-gil$gil" \
            --markdown "$FT_OUT/s2-0ms-gil$gil.md" || die "S2 (gil $gil) failed"
        grep -qh "\"gil_enabled_at_end\": $([ "$gil" -eq 0 ] && echo false || echo true)" \
            "$FT_OUT/s2-gil$gil"/*.json || die "S2 (gil $gil): GIL state not as asked"
    done
    # The plot needs matplotlib, which this venv does not carry: the repo's venv draws it.
    if [ -x "$REPO/.venv/bin/python" ] && "$REPO/.venv/bin/python" -c 'import matplotlib' 2>/dev/null
    then
        "$REPO/.venv/bin/python" -m benchmarks.scaling \
            --from "$FT_OUT/s1-scaling-gil0.json" "$FT_OUT/s1-scaling-gil1.json" \
            --labels "3.13.5t, GIL off;3.13.5t, PYTHON_GIL=1" --plot "$FT_OUT/s1-scaling.png"
    else
        echo "no matplotlib in $REPO/.venv: plot skipped (make .venv PIP_EXTRAS=bench)"
    fi
    echo "results: $FT_OUT"
}

case "${1:-all}" in
    build) shift; cmd_build "$@" ;;
    test) shift; cmd_test "$@" ;;
    bench) shift; cmd_bench "$@" ;;
    all) shift || true; cmd_test; cmd_bench ;;
    *) die "usage: $0 [build|test|bench|all]" ;;
esac
