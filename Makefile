PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup java browser test test-fidelity docs demo demo-images clean

setup: $(STAMP) browser

# Chromium + chromedriver (Debian packages) for the explorer's browser test, where apt-get is there and
# we are root; quiet, and a failure does not fail the set-up (the test then skips and says why).
browser:
	@bash .ci/install-browser

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,docs]"
	@$(MAKE) --no-print-directory java
	@$(MAKE) --no-print-directory browser
	touch $(STAMP)

# A Java runtime for the Spark engine (pyspark runs on a JVM): Debian's openjdk-17-jre-headless where
# no java is found and apt-get can run as root. A failed install does not stop the set-up; the Spark
# tests then fail (they are not skipped unless BAMREC_SPARK_TESTS=0), naming the missing runtime.
java:
	@command -v java >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make setup: installing openjdk-17-jre-headless (a Java runtime for the Spark engine)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	        openjdk-17-jre-headless; } >/dev/null 2>&1 \
	      || echo "make setup: could not install openjdk-17-jre-headless; the Spark engine needs Java 17+" >&2; \
	  else \
	    echo "make setup: no java found; install a Java 17+ runtime for the Spark engine (bamrec data prepare --engine spark)" >&2; \
	  fi; }

test: $(STAMP)
	$(BIN)/python -m pytest

# The fidelity suite against the original BaM code (docs/fidelity.md): the original's src/ folder is
# required here, where `make test` skips the suite without it (and says so in its summary).
# The check comes before the set-up, so a missing BAM_ORIGINAL_SRC is refused at once, set up or not.
test-fidelity:
	@test -n "$(BAM_ORIGINAL_SRC)" || { echo "make test-fidelity: set BAM_ORIGINAL_SRC to the original BaM code's src/ folder (docs/fidelity.md)" >&2; exit 2; }
	@$(MAKE) --no-print-directory $(STAMP)
	BAM_ORIGINAL_SRC="$(BAM_ORIGINAL_SRC)" BAMREC_REQUIRE_ORIGINAL=1 $(BIN)/python -m pytest -s tests/compat/test_fidelity.py

# The documentation site in site/ (open site/index.html); --strict: a broken link or reference fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

demo: $(STAMP)
	$(BIN)/bamrec demo --out demo-output --overwrite

# The plots docs/demo.md shows: the report plots of `make demo` (seeded, so the same files each time).
demo-images: demo
	install -m 644 demo-output/report/metrics_by_method.png docs/images/demo-metrics-by-method.png
	install -m 644 demo-output/report/validation_curves.png docs/images/demo-validation-curves.png

clean:
	rm -rf $(VENV) demo-output site
