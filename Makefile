# `make demo` and `make test` work from a fresh clone: they create .venv, install the pinned
# dependencies, make Delta's jars available (Spark's Ivy cache), then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONF   ?= conf/local.yaml
export HF_HUB_OFFLINE := 1
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: install demo test test-spark35 mlflow-ui clean

$(VENV)/.installed: setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[spark,ml,test]'
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps scenedetect petastorm
	@command -v java >/dev/null || { echo "Java 17+ is required by Spark: install a JDK (e.g. apt-get install openjdk-17-jdk-headless)"; exit 1; }
	$(BIN)/python -m panda_spark.spark --fetch-jars
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/panda-spark demo --conf $(CONF)
	$(BIN)/panda-spark sql "SELECT count(*) AS n FROM panda.videos" --conf $(CONF) --format json

test: install
	$(BIN)/python -m pytest -q

# The Spark 3.5 line that EMR 7.x runs (deploy/emr/README.md): a second venv with pyspark 3.5 and
# delta-spark 3.3 (constraints-spark35.txt over constraints.txt), and the tests of the stages that
# need no models (ingest, split, import/export, the tables' MERGE, commits and waves, errors).
VENV35 := .venv-spark35
BIN35  := $(VENV35)/bin
# (the deselected tests need torch, or repeat what the others cover at a minute or more each)
SPARK35_TESTS := tests/test_spark_versions.py tests/test_tables.py tests/ingest tests/split/test_stage.py \
	tests/dataset/test_stages.py tests/test_crash_safety.py tests/test_maintain.py \
	--deselect tests/split/test_stage.py::test_a_transformers_embedder_from_conf_resplits_in_spark \
	--deselect tests/split/test_stage.py::test_a_changed_video_file_is_split_again \
	--deselect tests/split/test_stage.py::test_clips_can_be_materialised_as_mp4_files_with_timestamps_from_zero \
	--deselect tests/test_crash_safety.py::test_split_killed_with_sigkill_after_the_clips_commit_reruns_to_the_uninterrupted_state \
	--deselect tests/test_crash_safety.py::test_resplit_removes_every_row_of_the_clips_it_drops_even_when_stopped_midway \
	--deselect tests/test_crash_safety.py::test_caption_and_select_stopped_after_any_commit_rerun_to_the_uninterrupted_state

# pip refuses two pins of one package: drop constraints.txt's lines for the packages the overlay pins
$(VENV35)/constraints.txt: constraints.txt constraints-spark35.txt
	test -x $(BIN35)/python || $(PYTHON) -m venv $(VENV35)
	awk -F'==' 'NR == FNR { if (NF == 2 && $$1 !~ /^#/) pinned[$$1]; print; next } !($$1 in pinned)' \
		constraints-spark35.txt constraints.txt > $@

$(VENV35)/.installed: setup.py $(VENV35)/constraints.txt
	$(BIN35)/python -m pip install -q --upgrade pip
	$(BIN35)/python -m pip install -q -c $(VENV35)/constraints.txt -e '.[spark,test]'
	$(BIN35)/python -m pip install -q -c $(VENV35)/constraints.txt --no-deps scenedetect
	@command -v java >/dev/null || { echo "Java 17+ is required by Spark: install a JDK (e.g. apt-get install openjdk-17-jdk-headless)"; exit 1; }
	$(BIN35)/python -m panda_spark.spark --fetch-jars
	touch $@

test-spark35: $(VENV35)/.installed
	$(BIN35)/python -m pytest -q -W "ignore:distutils Version classes:DeprecationWarning" $(SPARK35_TESTS)

# The local MLflow store of the embedded default (runs, metrics, registered models) on
# http://127.0.0.1:$(MLFLOW_PORT); artifacts are read from each experiment's own location.
MLFLOW_PORT ?= 5000
ROOT ?= .panda
mlflow-ui: install
	mkdir -p $(ROOT)/mlflow
	$(BIN)/mlflow server --host 127.0.0.1 --port $(MLFLOW_PORT) \
		--backend-store-uri sqlite:///$(abspath $(ROOT))/mlflow/mlflow.db \
		--default-artifact-root file://$(abspath $(ROOT))/mlflow/artifacts

clean:
	rm -rf .panda .pytest_cache
