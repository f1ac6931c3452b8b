#!/usr/bin/env bash
# Install what pyesca needs on a Debian 12 machine: the system packages (only
# those missing; `apt-get update` only if something is) and the project's
# virtualenv .venv with pyesca and its [test,bench] extras.
#
# Usage: tools/deps.sh [PYTHON]      (run from the repository root; PYTHON
#                                     defaults to python3, used to make .venv)
set -euo pipefail

PYTHON=${1:-python3}
VENV=.venv

say() { printf 'deps: %s\n' "$*"; }

SUDO=
if [ "$(id -u)" != 0 ]; then
	SUDO=sudo
fi

pkgs=(build-essential liburing-dev pkg-config lighttpd nginx-light wrk strace linux-perf valgrind)
# The key-value servers users run beside the web servers: tests/servers/
# (test_redis.py, test_memcached.py) and benchmarks/kv.py, with their load
# generators (redis-benchmark comes with redis-server; memcslap).
pkgs+=(redis-server memcached libmemcached-tools)

# `make test-lkm` (lkm/qemu/run.sh): QEMU, a static busybox and cpio for the
# guest, and a Debian kernel with the headers of the very same release to
# build the module against (the metapackages pull a matching pair).  Only
# when no such pair is installed already.
pkgs+=(qemu-system-x86 busybox-static cpio)
have_kernel_pair() {
	local img v
	for img in /boot/vmlinuz-*; do
		[ -e "$img" ] || continue
		v=${img#/boot/vmlinuz-}
		if [ -f "/lib/modules/$v/build/Module.symvers" ] ||
			[ -f "/usr/src/linux-headers-$v/Module.symvers" ]; then
			return 0
		fi
	done
	return 1
}
if [ "$(dpkg --print-architecture)" = amd64 ] && ! have_kernel_pair; then
	pkgs+=(linux-image-cloud-amd64 linux-headers-cloud-amd64)
fi

# A Debian python3 needs python3-venv for `-m venv` and python3-dev for
# Python.h; a pyenv (or other self-built) Python has both already.
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
	pkgs+=(python3-venv)
fi
if ! "$PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
	>/dev/null 2>&1; then
	pkgs+=(python3-dev)
fi

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${missing[*]}"
	# Installing lighttpd/nginx would start them on port 80; the tests and
	# benchmarks start their own.  Keep apt from starting services, unless the
	# machine already has a policy of its own.
	policy=/usr/sbin/policy-rc.d
	made_policy=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
		$SUDO chmod 755 "$policy"
		made_policy=1
	fi
	cleanup() { if [ -n "$made_policy" ]; then $SUDO rm -f "$policy"; fi; }
	trap cleanup EXIT
	log=$(mktemp)
	if ! { $SUDO apt-get update -qq &&
		$SUDO env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
		>"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		say "apt-get failed" >&2
		exit 1
	fi
	rm -f "$log"
fi

# The virtualenv.  pip's own output is hidden unless it fails.
run_quiet() {
	local log
	log=$(mktemp)
	if ! "$@" >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		say "failed: $*" >&2
		return 1
	fi
	rm -f "$log"
}

if [ ! -x "$VENV/bin/python" ]; then
	say "creating $VENV with $("$PYTHON" --version 2>&1)"
	run_quiet "$PYTHON" -m venv "$VENV"
	run_quiet "$VENV/bin/python" -m pip install --upgrade pip setuptools wheel
fi
run_quiet "$VENV/bin/python" -m pip install --disable-pip-version-check '.[test,bench]'
say "ok"
