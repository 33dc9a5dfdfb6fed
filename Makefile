# Thin wrapper over CMake and ctest. Every target that needs system packages
# runs hack/install-deps.sh first (a no-op when everything is there).
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN ?= build-asan

.PHONY: all deps build build-asan test unit integration bench quickstart quickstart-down format clean

all: build

deps:
	@hack/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	@cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DKILN_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN) -j $(JOBS)

# Unit tests and fuzz targets under ASan+UBSan, then the integration and
# client tests on the release build; one summary line at the end.
test: build build-asan
	@hack/run-tests.sh $(ASAN) $(BUILD)

bench: deps build
	@hack/install-deps.sh --bench
	@hack/bench/run-all.sh $(BUILD)

quickstart: build
	@hack/quickstart.sh

quickstart-down:
	@hack/quickstart.sh --down

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN)
