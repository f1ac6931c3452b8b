# pyesca: `make test` (what CI runs) and `make bench`, as root on Debian 12.
#
#   deps    system packages (apt, only the missing ones) and .venv with .[test,bench]
#   build   install pyesca into .venv (pip install .) and build the C test program
#   ctest   the native core's C tests, plain and under ASan+UBSan
#   check-core-calls  no native/core/*.c calls a name libesca.so interposes
#           (tools/check_core_calls.sh)
#   lint    ruff
#   test-lkm  the kernel module (lkm/) built against Debian's kernel headers
#           and tested in a QEMU guest booting that kernel (lkm/qemu/run.sh)
#   test    deps build ctest test-lkm lint, then pytest (each test's time in
#           build/pytest.xml: make test has 15 minutes)
#   bench   deps build, then `esca bench` (the seed's experiment: bench.png,
#           bench.json, bench.md) and benchmarks/micro.py where it exists
#   clean   remove build products (keeps .venv; `make distclean` removes it too)

PYTHON ?= python3
VENV   ?= .venv
PY     ?= $(VENV)/bin/python
CC     ?= cc

BUILD  := build
CORE_SRC := $(sort $(wildcard native/core/*.c))
CORE_HDR := $(wildcard native/include/*.h native/core/*.h native/tests/*.h)
TEST_SRC := $(sort $(wildcard native/tests/*.c))

CTEST_CFLAGS := -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Inative/include -Inative/core
CTEST_LIBS   := -luring -lpthread
SAN_FLAGS    := -fsanitize=address,undefined -fno-omit-frame-pointer -g
# Seconds one C test program may run.
CTEST_TIMEOUT ?= 300

LINT_DIRS := $(wildcard src tests benchmarks)

.PHONY: fuzz-long all deps build install ctest check-core-calls lint test test-lkm bench \
	clean distclean

all: build

deps:
	@bash tools/deps.sh $(PYTHON)

# Non-editable install: the tests import what was installed, never src/.
install:
	@test -x $(PY) || { echo "make: $(PY) missing: run 'make deps' first" >&2; exit 1; }
	@log=$$(mktemp); \
	if ! $(PY) -m pip install --disable-pip-version-check --no-build-isolation \
		--no-deps --force-reinstall . >$$log 2>&1; then \
		cat $$log >&2; rm -f $$log; echo "make: pip install . failed" >&2; exit 1; \
	fi; rm -f $$log; echo "build: pyesca installed into $(VENV)"

build: install $(BUILD)/test_core

$(BUILD)/test_core: $(TEST_SRC) $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(BUILD)
	$(CC) $(CTEST_CFLAGS) -O2 -o $@ $(TEST_SRC) $(CORE_SRC) $(CTEST_LIBS)

$(BUILD)/test_core-asan: $(TEST_SRC) $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(BUILD)
	$(CC) $(CTEST_CFLAGS) -O1 $(SAN_FLAGS) -o $@ $(TEST_SRC) $(CORE_SRC) $(CTEST_LIBS)

# Exit status of a test program: 0 pass, 77 skip, anything else fail.
define run_ctest
	@echo "ctest: $(1)"; \
	rc=0; $(2) timeout $(CTEST_TIMEOUT) $(1) || rc=$$?; \
	if [ $$rc = 0 ]; then echo "ctest: $(1): passed"; \
	elif [ $$rc = 77 ]; then echo "ctest: $(1): skipped"; \
	elif [ $$rc = 124 ]; then echo "ctest: $(1): timed out after $(CTEST_TIMEOUT)s" >&2; exit 1; \
	else echo "ctest: $(1): FAILED (exit $$rc)" >&2; exit 1; fi
endef

ctest: $(BUILD)/test_core $(BUILD)/test_core-asan
	$(call run_ctest,$(BUILD)/test_core,)
	$(call run_ctest,$(BUILD)/test_core-asan,ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1)

# The core makes its system calls through native/core/sys.h, never through a
# libc name the preload library interposes.
check-core-calls:
	@CC=$(CC) bash tools/check_core_calls.sh

lint:
	$(VENV)/bin/ruff check $(LINT_DIRS)

# Exit status 77 (skip) only says why (no qemu, no kernel image: `deps`
# installs both, so `make test-lkm` really runs).
define run_lkm
	@rc=0; bash lkm/qemu/run.sh || rc=$$?; \
	if [ $$rc = 77 ]; then echo "test-lkm: skipped"; \
	elif [ $$rc != 0 ]; then echo "test-lkm: FAILED (exit $$rc)" >&2; exit 1; fi
endef

test-lkm: deps
	$(run_lkm)

test: deps
	@$(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory ctest
	@$(MAKE) --no-print-directory check-core-calls
	$(run_lkm)
	@$(MAKE) --no-print-directory lint
	$(VENV)/bin/pytest -q --durations=15 --junitxml=build/pytest.xml tests

# The fuzzers, run long (15-17 min on 2 vCPUs; not part of make test): the
# defects the short runs in make test miss. Each prints the seed that replays it.
fuzz-long: deps
	@$(MAKE) --no-print-directory build
	ESCA_CONTRACT_EXAMPLES=20000 $(VENV)/bin/pytest -q tests/test_contract.py::test_differential
	ESCA_FUZZ_EXAMPLES=2000 $(VENV)/bin/pytest -q -s tests/reliability/test_fuzz.py
	ESCA_FLUSH_US=30000 ESCA_TRUST_FUZZ_EXAMPLES=300 $(VENV)/bin/pytest -q -s \
		tests/trust/test_fuzz_threads.py
	ESCA_PREFETCH_SEEDS=40 $(VENV)/bin/pytest -q \
		tests/preload/test_prefetch.py::test_prefetch_echo_matches_plain

bench: deps
	@$(MAKE) --no-print-directory build
	$(PY) -m pyesca.cli bench --plot bench.png --json bench.json --markdown bench.md
	@if [ -f benchmarks/micro.py ]; then echo "$(PY) benchmarks/micro.py"; \
		$(PY) benchmarks/micro.py; fi

clean:
	rm -rf $(BUILD) dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis \
		bench.png bench.json bench.md
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name '*.so' \) -print0 \
		| xargs -0 rm -rf
	rm -rf lkm/*.ko lkm/*.o lkm/*.mod lkm/*.mod.c lkm/.*.cmd lkm/Module.symvers \
		lkm/modules.order lkm/.tmp_versions

distclean: clean
	rm -rf $(VENV)
