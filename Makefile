# gateskip: the two commands of README.md, and the virtual environment they share.
#
#   make demo   the default threshold sweep of the golden model (out/sweep/)
#   make test   the whole test suite
#
# Torch is installed first and on its own, so that nothing pulls a CUDA build: here the CPU wheel
# torch==2.13.0 lies in pip's find-links. Elsewhere, for example:
#   make demo TORCH="torch" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"

PYTHON      ?= python3
VENV        ?= .venv
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
BIN         := $(VENV)/bin
# pytest's workers (pytest-xdist): one per core by default
TEST_JOBS   ?= auto

.PHONY: demo test venv iverilog clean

demo: $(VENV)/.installed
	$(BIN)/gateskip sweep --json out/sweep/sweep.json

test: $(VENV)/.installed iverilog
	$(BIN)/python -m pytest -n $(TEST_JOBS)

# From Debian's packages: Icarus Verilog, the second simulator of the cocotb suite, and the USB
# libraries openFPGALoader (gateskip flash) loads.
DEBS := iverilog libusb-1.0-0 libftdi1-2

iverilog:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	[ -z "$$missing" ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  elif command -v iverilog >/dev/null; then \
	    echo "note: $$missing missing (gateskip flash needs libusb and libftdi)" >&2; \
	  else echo "missing: sudo apt-get install $$missing" >&2; exit 1; fi; }

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_INDEX) "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf out sim_build .pytest_cache
