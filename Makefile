# Front door: drives CMake. `make`, `make test`, `make demo`, `make soak`,
# `make bench`. SANITIZE=1 builds with ASan and UBSan in build-san/.

SANITIZE ?= 0
WERROR ?= 0
MAKEFLAGS += --no-print-directory
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

ifeq ($(SANITIZE),1)
BUILD := build-san
CMAKE_FLAGS := -DREFEREE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
else
BUILD := build
CMAKE_FLAGS := -DCMAKE_BUILD_TYPE=RelWithDebInfo
endif
ifeq ($(WERROR),1)
CMAKE_FLAGS += -DREFEREE_WERROR=ON
endif

.PHONY: all deps configure test demo soak bench clean format

all: configure
	cmake --build $(BUILD) -j $(JOBS)

deps:
	@scripts/install-deps

configure: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null

test: all
	cd $(BUILD) && ctest --output-on-failure -j 2 -LE soak

soak: all
	cd $(BUILD) && ctest --output-on-failure -L soak

demo: all
	@scripts/demo $(BUILD)/referee $(if $(KEEP),--keep)

bench: all
	@bench/run $(BUILD)

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'include/*.h' \
	  'tests/*.c' 'bench/*.c')

clean:
	rm -rf build build-san
