# Ferry - the two commands a newcomer needs:
#   make run    build, then run an example model through `ferry run`
#   make test   build, then run every test (plain build, then ASan+UBSan build)
# Both install missing Debian packages first (scripts/install-deps.sh).

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
CTEST_ARGS ?=

.PHONY: all deps build run test test-plain test-asan fuzz asan format docs clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j$(JOBS)

# Serves the bundled example repository and prints a curl command that works.
run: build
	bash scripts/serve-example.sh $(BUILD)

test: test-plain test-asan

test-plain: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) $(CTEST_ARGS)

# The sanitizer build runs everything except the large end-to-end models (minutes under ASan),
# plus the loader's corpus of broken models.
test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=ON \
	  -DCMAKE_C_FLAGS_DEBUG="-O1 -g"
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j$(JOBS) $(CTEST_ARGS)

# libFuzzer targets (clang); FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz: deps
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DFERRY_FUZZ=ON -DFERRY_TESTS=OFF
	cmake --build $(FUZZ_BUILD) -j$(JOBS)
	mkdir -p $(FUZZ_BUILD)/corpus-model $(FUZZ_BUILD)/corpus-tensor
	$(FUZZ_BUILD)/tests/fuzz/fuzz_model_load -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 \
	  $(FUZZ_BUILD)/corpus-model tests/fuzz/corpus/model
	$(FUZZ_BUILD)/tests/fuzz/fuzz_tensor_file -max_total_time=$(FUZZ_SECONDS) \
	  $(FUZZ_BUILD)/corpus-tensor tests/fuzz/corpus/tensor
	mkdir -p $(FUZZ_BUILD)/corpus-config
	$(FUZZ_BUILD)/tests/fuzz/fuzz_config_pbtxt -max_total_time=$(FUZZ_SECONDS) \
	  $(FUZZ_BUILD)/corpus-config tests/fuzz/corpus/config_pbtxt
	mkdir -p $(FUZZ_BUILD)/corpus-infer-json $(FUZZ_BUILD)/corpus-infer-binary
	$(FUZZ_BUILD)/tests/fuzz/fuzz_infer_json -max_total_time=$(FUZZ_SECONDS) \
	  $(FUZZ_BUILD)/corpus-infer-json tests/fuzz/corpus/infer_json
	$(FUZZ_BUILD)/tests/fuzz/fuzz_infer_binary -max_total_time=$(FUZZ_SECONDS) \
	  $(FUZZ_BUILD)/corpus-infer-binary tests/fuzz/corpus/infer_binary

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# Regenerates docs/OPERATORS.md from a conformance run.
docs: build
	/usr/bin/python3 scripts/gen-operators-md.py --runner $(BUILD)/tests/ferry-conformance \
	  --out docs/OPERATORS.md

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
