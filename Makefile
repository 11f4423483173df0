# Thin front over CMake. The two commands of the README:
#   make run   - install missing Debian packages (as root), configure, build, run the default scenario
#                (the viewer when a display exists; headless: a summary table and the viewer's
#                frames in $(BUILD)/run_frames/)
#   make test  - the same set-up, then the whole CTest suite
# Everything else (options, other build types) goes through CMake directly; see README.md.

BUILD   ?= build
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
DEBS := cmake gcc make pkg-config libsdl2-dev liblua5.4-dev libopenblas-dev libpng-dev \
        xvfb xauth libgl-dev libgl1-mesa-dri libopenmpi-dev openmpi-bin python3 python3-numpy

.PHONY: run test deps build clean

deps:
	@sh tools/deps.sh $(DEBS)

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	@rm -rf $(BUILD)/run_frames
	./$(BUILD)/egoworld run --headless-frames $(BUILD)/run_frames

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD)
