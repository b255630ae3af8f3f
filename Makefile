# tlsgate front door.
#
#   make demo    install, build, run the demo (upstream + gateway + bench), stop
#   make test    install, build, run every test: release build, then the same
#                suite under ASan+UBSan, two workers (and the tests labelled
#                tsan) under TSan, a clang build, and short fuzz runs
#
# Other targets: build, asan, unit, integration, lint, format, test-repeat,
# bench-compare, bench-providers, valgrind, image, test-image, clean.

BUILD      ?= build
ASAN_BUILD ?= build-asan
CLANG_BUILD ?= build-clang
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 15
JOBS       ?= $(shell nproc)
CTEST_ARGS ?= --output-on-failure -j2

.PHONY: all setup build asan demo test test-release test-asan test-tsan test-clang test-fuzz fuzz-long unit \
        integration \
        lint format test-repeat test-long \
        valgrind bench-compare bench-providers clean

all: build

setup: .deps/setup.stamp

.deps/setup.stamp: scripts/setup.sh deploy/package-lock.json
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

test: test-release test-asan test-tsan test-clang test-fuzz

test-release: build
	ctest --test-dir $(BUILD) $(CTEST_ARGS)

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_BUILD) $(CTEST_ARGS) -LE perf

# ThreadSanitizer (clang): two workers under load with the deferred and
# cryptomb providers (the 2-worker case of test_load), the upstream cluster
# tests (two workers: DNS refresh, failover, IPv6), the reloads under load
# (two workers switching generations, clusters retired while connections
# use them), the access log's operations (two workers' rings, the writer
# thread, rotations under load, a blocked destination), the session ticket
# key ring (two workers and the main thread's rotation timer), the key server
# with a two-worker gateway (end to end, kill and restart under load), and
# every test labelled tsan (tests/tests.cmake; the pkcs11 provider's signing
# threads); any report fails them.
test-tsan: setup
	CC=clang cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTG_TSAN=ON
	cmake --build $(TSAN_BUILD) -j$(JOBS) --target tlsgate tg_tsan
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" TG_LOAD_WORKERS_ONLY=1 \
	  TG_WORKER_PROVIDERS="deferred cryptomb" TG_TIMEOUT_SCALE=3 \
	  ctest --test-dir $(TSAN_BUILD) -R '^integration/test_(load|upstream_dns|upstream_failover|upstream_ipv6|reload|reload_upstream|access_log_ops|session_tickets|keyserver|keyserver_restart)$$' \
	  --output-on-failure
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	  ctest --test-dir $(TSAN_BUILD) -L tsan --output-on-failure

# Warning-free with clang too (-Werror): build everything.
test-clang: setup
	CC=clang cmake -S . -B $(CLANG_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(CLANG_BUILD) -j$(JOBS)

# libFuzzer targets (config loader, admin HTTP parser, key-operation call
# sequences, gateway-api converter, PROXY protocol parser and builder, key
# server protocol, and the providers' own: PKCS#11 URIs), FUZZ_SECONDS each.
# fuzz_all builds every target fuzz/fuzz.cmake found, which ctest -L fuzz
# then runs. test-fuzz uses a fixed seed (a gate must not turn red by luck);
# fuzz-long explores with a new seed per target, FUZZ_LONG_SECONDS each: run
# it before landing a change to a parser (CONTRIBUTING.md).
FUZZ_LONG_SECONDS ?= 600
test-fuzz: setup
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTG_FUZZ=ON \
	  -DTG_FUZZ_SECONDS=$(FUZZ_SECONDS) -DTG_FUZZ_SEED=1
	cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzz_all
	ctest --test-dir $(FUZZ_BUILD) -L fuzz --output-on-failure

fuzz-long: setup
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTG_FUZZ=ON \
	  -DTG_FUZZ_SECONDS=$(FUZZ_LONG_SECONDS) -DTG_FUZZ_SEED=0
	cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzz_all
	ctest --test-dir $(FUZZ_BUILD) -L fuzz -j$(JOBS) --output-on-failure

unit: build
	ctest --test-dir $(BUILD) -L unit $(CTEST_ARGS)

integration: build
	ctest --test-dir $(BUILD) -L integration $(CTEST_ARGS)

# Every unit test 50 times under -j2 with both CPUs busy (REPEAT=N to change).
REPEAT ?= 50
test-repeat: build
	bash scripts/test-repeat.sh $(BUILD) $(REPEAT)

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

# ---- container image (docs/KUBERNETES.md) ----
# OCI archive built from Debian packages (mmdebstrap + umoci), loaded into
# podman when it is installed; test-image runs it with podman and drives real
# handshakes through it.
IMAGE ?= $(BUILD)/tlsgate-image.tar
.PHONY: image test-image
image: build
	bash scripts/image.sh $(BUILD) $(IMAGE)

# A 60 s soak at saturation: no failed call, no descriptor leak, flat RSS
# (tests/long/soak.sh; TG_SOAK_SECONDS to change). .ci/run runs it.
test-long: build
	TLSGATE=$(abspath $(BUILD))/tlsgate bash tests/long/soak.sh

test-image: image
	TLSGATE=$(BUILD)/tlsgate TG_IMAGE_ARCHIVE=$(IMAGE) bash tests/image/test_image.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(CLANG_BUILD) $(FUZZ_BUILD)
