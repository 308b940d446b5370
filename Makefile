# `make demo` and `make test` work from a fresh clone: they create .venv, install the pinned
# dependencies, make Delta's jars available (Spark's Ivy cache), then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONF   ?= conf/local.yaml
export HF_HUB_OFFLINE := 1
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: install demo test mlflow-ui clean

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
