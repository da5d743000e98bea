# The two commands: `make run` and `make test`. Both install what they need
# (scripts/bootstrap.sh), then build. JOBS stays at 2 for the 2-core machine.
JOBS ?= 2
PRESET ?= release
BUILD_DIR := $(if $(filter release,$(PRESET)),build,build-$(PRESET))
PYTHON := /usr/bin/python3

.PHONY: bootstrap build run test unit e2e bench bench-storage bench-api bench-login bench-backup format check-asan fuzz clean

bootstrap:
	@bash scripts/bootstrap.sh

build: bootstrap
	@cmake --preset $(PRESET) >/dev/null
	@cmake --build --preset $(PRESET) -j $(JOBS)

run: build
	./$(BUILD_DIR)/silo serve

unit: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

e2e: build
	SILO_BIN=$(CURDIR)/$(BUILD_DIR)/silo $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e

test: unit e2e

bench: build
	bash bench/http_bench.sh $(BUILD_DIR)/silo

# Plain unix VFS against the cipher VFS, interleaved; RUNS runs (default 5).
bench-api: build
	bash bench/api_bench.sh $(BUILD_DIR)

# One tenant of BENCH_MIB (default 1024) MiB: backup and restore MB/s against cp, drill RTO.
BENCH_MIB ?= 1024
bench-backup: build
	./$(BUILD_DIR)/backup_bench --mib $(BENCH_MIB) --runs 5

bench-login: build
	bash bench/login_bench.sh $(BUILD_DIR)

bench-storage: build
	./$(BUILD_DIR)/storage_bench

check-asan:
	$(MAKE) PRESET=asan test

# libFuzzer targets with clang; FUZZ_SECONDS each (the seed corpus lives in tests/fuzz/corpus/<target>).
FUZZ_SECONDS ?= 60
fuzz: bootstrap
	@cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz -j $(JOBS)
	mkdir -p build-fuzz/corpus/page_open
	./build-fuzz/page_open_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=4097 \
	    build-fuzz/corpus/page_open tests/fuzz/corpus/page_open
	mkdir -p build-fuzz/corpus/backup_archive
	./build-fuzz/backup_archive_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	    build-fuzz/corpus/backup_archive tests/fuzz/corpus/backup_archive

format:
	clang-format -i $$(git ls-files 'src/*.cc' 'src/*.h')

clean:
	rm -rf build build-debug build-asan build-fuzz
