# SPDX-License-Identifier: Apache-2.0
# A thin wrapper over CMake + Ninja. Every target is phony: CMake and Ninja decide what to
# rebuild. Typical use on a fresh Debian 12 machine, as root:
#   make deps example     install the packages, build, run examples/demo.sh
#   make deps test        install the packages, build, run the tests
# Variables: BUILD_DIR, ASAN_BUILD_DIR, FUZZ_BUILD_DIR, BUILD_TYPE, ASAN_BUILD_TYPE, CMAKE_ARGS
# (extra -D flags), JOBS (parallel build and test jobs), FUZZ_TIME and FUZZ_TARGETS (make fuzz).

BUILD_DIR       ?= build
ASAN_BUILD_DIR  ?= build-asan
# The FUSE passthrough build: libfuse >= 3.18 built from Debian's source package (fetched by
# scripts/libfuse-source.sh into this directory), then laminafs and its mount tests.
PT_BUILD_DIR    ?= build-passthrough
FUZZ_BUILD_DIR  ?= build-fuzz
BUILD_TYPE      ?= RelWithDebInfo
# Debug (-O0): GCC 12 at -O2 with ASan reports false -Wmaybe-uninitialized errors inside
# libstdc++ (std::regex, pulled in by Catch2), which -Werror turns into a failed build.
ASAN_BUILD_TYPE ?= Debug
CMAKE_ARGS      ?=
JOBS            ?=

# The benchmark driver needs Debian's python3 (python3-matplotlib for the plots), not a
# python3 that a version manager put first on PATH.
PYTHON         ?= $(if $(wildcard /usr/bin/python3),/usr/bin/python3,python3)

CMAKE          ?= cmake
CTEST          ?= ctest
CLANG_FORMAT   ?= clang-format
CLANG_TIDY     ?= clang-tidy
RUN_CLANG_TIDY ?= run-clang-tidy

# Goals run one after another in the order given (`make deps test` under -j too); Ninja and
# ctest do the parallel work.
.NOTPARALLEL:

BUILD_JOBS := $(if $(JOBS),--parallel $(JOBS),)
CTEST_JOBS := $(if $(JOBS),--parallel $(JOBS),)

# Sources that lint checks: every *.cc and *.h under these directories (those that exist).
LINT_DIRS := $(wildcard src include tools tests bench)
# Translation units that tidy checks: those in compile_commands.json under src/ and tools/.
TIDY_DIRS  := src tools
TIDY_REGEX := $(abspath .)/(src|tools)/.*\.cc$$

.PHONY: all deps configure build test asan build-asan test-asan example lint format tidy clean help \
  bench bench-quick build-passthrough test-passthrough build-fuzz fuzz soak load

all: build

help:
	@echo "make deps        install the Debian packages (scripts/deps.sh; apt only if needed)"
	@echo "make build       release build (-Werror) into $(BUILD_DIR)/, binaries in $(BUILD_DIR)/bin/"
	@echo "make test        build, then run unit and integration tests (ctest)"
	@echo "make asan        ASan+UBSan build into $(ASAN_BUILD_DIR)/ and run the tests there"
	@echo "make test-passthrough  build against libfuse >= 3.18 (Debian's source package, built in"
	@echo "                 $(PT_BUILD_DIR)/; FUSE passthrough, io_uring) and run the write-path mount"
	@echo "                 tests there, then again through FUSE over io_uring"
	@echo "make example     build, then run examples/demo.sh (needs root and /dev/fuse)"
	@echo "make lint        clang-format check (no changes made); 'make format' rewrites"
	@echo "make tidy        clang-tidy on src/ and tools/"
	@echo "make bench       build, then benchmark every configuration (~12 min, root): writes"
	@echo "                 docs/benchmarks.md and docs/bench/*.png"
	@echo "make bench-quick the same at small sizes, one run (smoke test, < 1 min); report in"
	@echo "                 $(BUILD_DIR)/bench-quick/"
	@echo "make soak        build, then SOAK_PROCS (4) lamina_fsx processes for SOAK_TIME (1800) s"
	@echo "                 on one mount, verified again after a remount (root, /dev/fuse)"
	@echo "make load        build, then LOAD_PROCS (16) processes of mixed work for LOAD_TIME (600) s"
	@echo "                 on one mount and on a plain dir: errors, stalls, daemon RSS (root)"
	@echo "make fuzz        clang libFuzzer build into $(FUZZ_BUILD_DIR)/, then each harness of tests/fuzz"
	@echo "                 for FUZZ_TIME seconds (default $(FUZZ_TIME)); FUZZ_TARGETS picks some; a crash"
	@echo "                 fails (docs/reliability.md, Fuzzing)"
	@echo "make clean       remove $(BUILD_DIR)/, $(ASAN_BUILD_DIR)/, $(PT_BUILD_DIR)/, $(FUZZ_BUILD_DIR)/"

deps:
	scripts/deps.sh

configure:
	$(CMAKE) -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DLAMINA_WERROR=ON $(CMAKE_ARGS)

build: configure
	$(CMAKE) --build $(BUILD_DIR) $(BUILD_JOBS)

test: build
	$(CTEST) --test-dir $(BUILD_DIR) --output-on-failure $(CTEST_JOBS)

build-asan:
	$(CMAKE) -S . -B $(ASAN_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(ASAN_BUILD_TYPE) \
	  -DLAMINA_SANITIZE=ON -DLAMINA_WERROR=ON $(CMAKE_ARGS)
	$(CMAKE) --build $(ASAN_BUILD_DIR) $(BUILD_JOBS)

# The sanitizer options reach the daemon too: integration tests start it from ctest.
# Every suite but write-writeback, which repeats the write suite with the kernel's writeback
# cache: the release build runs it, and under ASan it would add two minutes to a CI that has to
# stay under thirty.
test-asan: build-asan
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(CTEST) --test-dir $(ASAN_BUILD_DIR) --output-on-failure -E '^write-writeback$$' $(CTEST_JOBS)

asan: test-asan

build-passthrough:
	$(CMAKE) -S . -B $(PT_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DLAMINA_WERROR=ON -DLAMINA_LIBFUSE_SOURCE=ON $(CMAKE_ARGS)
	$(CMAKE) --build $(PT_BUILD_DIR) $(BUILD_JOBS) --target laminafs write_tests lamina_null_fuse lamina_bench

# The write-path suite: what passthrough changes is how file data moves (the read-only
# integration suite serves lower files, which never pass through, and nothing else depends on
# the FUSE library version).
# Then the same suite through FUSE over io_uring (write-uring), which the kernel offers only
# with the fuse module parameter enable_uring=Y: set here when writable (as root).
URING_PARAM := /sys/module/fuse/parameters/enable_uring
test-passthrough: build-passthrough
	@if [ -w $(URING_PARAM) ]; then \
	  echo "test-passthrough: echo Y > $(URING_PARAM) (FUSE over io_uring, for write-uring)"; \
	  echo Y > $(URING_PARAM); \
	else \
	  echo "test-passthrough: $(URING_PARAM) is not writable: write-uring runs through /dev/fuse"; \
	fi
	$(CTEST) --test-dir $(PT_BUILD_DIR) --output-on-failure -R '^write(-uring)?$$' $(CTEST_JOBS)

example: build
	LAMINAFS=$(abspath $(BUILD_DIR))/bin/laminafs examples/demo.sh

lint:
	@files=$$(find $(LINT_DIRS) -type f \( -name '*.cc' -o -name '*.h' \) | sort); \
	if [ -z "$$files" ]; then echo "lint: no sources"; exit 0; fi; \
	echo "lint: clang-format --dry-run -Werror on $$(echo "$$files" | wc -l) files"; \
	$(CLANG_FORMAT) --dry-run -Werror $$files && echo "lint: clean"

format:
	find $(LINT_DIRS) -type f \( -name '*.cc' -o -name '*.h' \) -print0 | \
	  xargs -0 -r $(CLANG_FORMAT) -i

# run-clang-tidy takes a regex over the absolute file names in compile_commands.json.
tidy: configure
	@if command -v $(RUN_CLANG_TIDY) >/dev/null; then \
	  $(RUN_CLANG_TIDY) -quiet -p $(BUILD_DIR) '$(TIDY_REGEX)'; \
	else \
	  find $(TIDY_DIRS) -name '*.cc' -print0 | xargs -0 -r $(CLANG_TIDY) --quiet -p $(BUILD_DIR); \
	fi

# Benchmarks (bench/README.md): need root, /dev/fuse, kernel overlayfs; fuse-overlayfs and
# mkfs.xfs are used when installed. BENCH_ARGS passes options to bench/run_bench.py.
BENCH_ARGS ?=

bench: build build-passthrough
	$(PYTHON) bench/run_bench.py --build-dir $(BUILD_DIR) $(BENCH_ARGS)

bench-quick: build
	$(PYTHON) bench/run_bench.py --quick --build-dir $(BUILD_DIR) \
	  --out $(BUILD_DIR)/bench-quick/benchmarks.md --plots $(BUILD_DIR)/bench-quick $(BENCH_ARGS)

# libFuzzer harnesses (tests/fuzz): clang with -fsanitize=fuzzer,address,undefined, in a build
# dir of their own; only the libraries and the harnesses are built there. FUZZ_TIME: seconds per
# target; FUZZ_TARGETS: a subset (mount_options manifest layer_tar oci_json store_json registry).
FUZZ_TIME    ?= 60
FUZZ_TARGETS ?=

build-fuzz:
	CC=clang CXX=clang++ $(CMAKE) -S . -B $(FUZZ_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DLAMINA_FUZZ=ON $(CMAKE_ARGS)
	$(CMAKE) --build $(FUZZ_BUILD_DIR) --target fuzzers $(BUILD_JOBS)

fuzz: build-fuzz
	tests/fuzz/run_fuzz.sh $(FUZZ_BUILD_DIR) $(FUZZ_TIME) $(FUZZ_TARGETS)

# Long soak and load runs (docs/reliability.md); ctest runs short versions of both. The seed is
# printed; SOAK_SEED / LOAD_SEED replay a run.
SOAK_TIME  ?= 1800
SOAK_PROCS ?= 4
LOAD_TIME  ?= 600
LOAD_PROCS ?= 16

soak: build
	SOAK_TIME=$(SOAK_TIME) SOAK_PROCS=$(SOAK_PROCS) $(BUILD_DIR)/bin/soak_tests '[soak]'

load: build
	LOAD_TIME=$(LOAD_TIME) LOAD_PROCS=$(LOAD_PROCS) $(BUILD_DIR)/bin/soak_tests '[load]'

clean:
	rm -rf $(BUILD_DIR) $(ASAN_BUILD_DIR) $(PT_BUILD_DIR) $(FUZZ_BUILD_DIR)
