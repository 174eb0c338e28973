PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-fidelity docs demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,docs]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# The fidelity suite against the original BaM code (docs/fidelity.md): the original's src/ folder is
# required here, where `make test` skips the suite without it (and says so in its summary).
test-fidelity: $(STAMP)
	@test -n "$(BAM_ORIGINAL_SRC)" || { echo "make test-fidelity: set BAM_ORIGINAL_SRC to the original BaM code's src/ folder (docs/fidelity.md)" >&2; exit 2; }
	BAM_ORIGINAL_SRC="$(BAM_ORIGINAL_SRC)" BAMREC_REQUIRE_ORIGINAL=1 $(BIN)/python -m pytest -s tests/compat/test_fidelity.py

# The documentation site in site/ (open site/index.html); --strict: a broken link or reference fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

demo: $(STAMP)
	$(BIN)/bamrec demo --out demo-output --overwrite

clean:
	rm -rf $(VENV) demo-output site
