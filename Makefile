# Thin wrapper around CMake. `make run` and `make test` are the two commands a
# fresh Debian 12 machine needs; both install missing packages first.
JOBS       ?= $(shell nproc)
BUILD      := build
ASAN_BUILD := build-asan
FUZZ_BUILD := build-fuzz
DATA_DIR   ?= default.etcd

.PHONY: all build run test unit-test asan fuzz deps build-deps clean

all: build

build-deps:
	@.ci/install-deps --build

deps:
	@.ci/install-deps

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: | build-deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

# Serve a single member on 127.0.0.1:2379 (etcd's defaults).
run: build-deps build
	$(BUILD)/bin/synod --data-dir $(DATA_DIR)

# Every test: the release build first, then the same unit and integration
# tests under AddressSanitizer + UndefinedBehaviorSanitizer.
test: deps build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) --timeout 900
	$(MAKE) asan
	$(MAKE) fuzz

unit-test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) -L unit

asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSYNOD_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j$(JOBS) -LE nosan --timeout 900

# Every decoder that reads the network or the disk, under libFuzzer for
# SYNOD_FUZZ_SECONDS each (seed corpora in tests/fuzz/corpus).
fuzz: deps
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSYNOD_FUZZ=ON
	cmake --build $(FUZZ_BUILD) -j$(JOBS)
	cd $(FUZZ_BUILD) && ctest --output-on-failure -j$(JOBS) -L fuzz

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
