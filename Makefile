# tlsgate front door.
#
#   make demo    install, build, run the demo (upstream + gateway + bench), stop
#   make test    install, build, run every test (release build, then ASan+UBSan)
#
# Other targets: build, asan, unit, integration, lint, format, bench-compare,
# bench-providers, valgrind, clean.

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CTEST_ARGS ?= --output-on-failure -j2

.PHONY: all setup build asan demo test test-release test-asan unit integration lint format \
        valgrind bench-compare bench-providers clean

all: build

setup: .deps/setup.stamp

.deps/setup.stamp: scripts/setup.sh
	bash scripts/setup.sh
	@mkdir -p .deps && touch $@

build: setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j$(JOBS)

asan: setup
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTG_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j$(JOBS)

demo: build
	bash scripts/demo.sh $(BUILD)/tlsgate

test: test-release test-asan

test-release: build
	ctest --test-dir $(BUILD) $(CTEST_ARGS)

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_BUILD) $(CTEST_ARGS) -LE perf

unit: build
	ctest --test-dir $(BUILD) -L unit $(CTEST_ARGS)

integration: build
	ctest --test-dir $(BUILD) -L integration $(CTEST_ARGS)

lint: build
	ctest --test-dir $(BUILD) -L lint $(CTEST_ARGS)

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h' 'fuzz/*.c')

# Integration suite under valgrind (memcheck, leak check on exit).
valgrind: build
	TG_VALGRIND=1 ctest --test-dir $(BUILD) -L integration --output-on-failure -j1

bench-compare: build
	bash bench/compare.sh $(BUILD)/tlsgate

bench-providers: build
	bash bench/providers.sh $(BUILD)/tlsgate

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
