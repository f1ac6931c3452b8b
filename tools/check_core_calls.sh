#!/usr/bin/env bash
# No file under native/core/ calls a name libesca.so interposes (DESIGN.md,
# "Contract: threads and fork": the core makes its own system calls through
# native/core/sys.h, never through libc's interposable names).
#
# Compiles native/core/*.c to objects, lists their undefined symbols (nm -u)
# and fails, naming file and symbol, on any that libesca.so exports.  The
# exported names come from the built libesca.so (nm -D --defined-only), else
# from native/preload/libesca.map.  Also checks that liburing, which the core
# links, calls nothing libesca.so exports.
#
# Usage: tools/check_core_calls.sh [LIBESCA_SO]   (from the repository root)
set -euo pipefail

CC=${CC:-cc}
say() { printf 'check-core-calls: %s\n' "$*"; }

so=${1:-}
if [ -z "$so" ]; then
	so=$(ls .venv/lib/python3*/site-packages/pyesca/libesca.so 2>/dev/null | head -n 1 || true)
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -n "$so" ] && [ -f "$so" ]; then
	nm -D --defined-only "$so" | awk '{ print $NF }' | sed 's/@.*//' | sort -u >"$tmp/exported"
	from=$so
elif [ -f native/preload/libesca.map ]; then
	# the names between "global:" and "local:", comments stripped
	sed -e 's,/\*.*\*/,,g' native/preload/libesca.map |
		awk '/global:/ { on = 1; next } /local:/ { on = 0 } on' |
		tr ';' '\n' | tr -d ' \t' | grep -v '^$' | sort -u >"$tmp/exported"
	from=native/preload/libesca.map
else
	say "no libesca.so and no native/preload/libesca.map: nothing to check against" >&2
	exit 1
fi
if [ ! -s "$tmp/exported" ]; then
	say "no exported names found in $from" >&2
	exit 1
fi

bad=0
for c in native/core/*.c; do
	o="$tmp/$(basename "$c" .c).o"
	$CC -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -fvisibility=hidden \
		-Inative/include -Inative/core -c "$c" -o "$o"
	nm -u "$o" | awk '{ print $NF }' | sed 's/@.*//' | sort -u >"$tmp/undef"
	for s in $(comm -12 "$tmp/undef" "$tmp/exported"); do
		say "$c calls $s, which libesca.so interposes (use native/core/sys.h)" >&2
		bad=1
	done
done

uring=$($CC -print-file-name=liburing.so)
if [ -f "$uring" ]; then
	uring=$(readlink -f "$uring")
	nm -D --undefined-only "$uring" | awk '{ print $NF }' | sed 's/@.*//' |
		sort -u >"$tmp/uring_undef"
	for s in $(comm -12 "$tmp/uring_undef" "$tmp/exported"); do
		say "liburing ($uring) calls $s, which libesca.so interposes" >&2
		bad=1
	done
else
	say "liburing.so not found: its calls not checked"
fi

if [ "$bad" != 0 ]; then
	say "FAILED" >&2
	exit 1
fi
say "native/core/*.c and liburing call none of the $(wc -l <"$tmp/exported") names $from exports"
