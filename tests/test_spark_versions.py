"""What differs between the Spark lines the package runs on: Spark 4.0 with Delta 4.0 (constraints.txt,
Databricks) and Spark 3.5 with Delta 3.3 (EMR 7.x; `make test-spark35`). Each test runs on both."""
from __future__ import annotations

import importlib.metadata

import pytest
from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

from panda_spark.spark import ddl_schema, delta_package
from panda_spark.tables import TABLES


@pytest.mark.parametrize("delta, scala", [("4.0.1", "2.13"), ("3.3.3", "2.12"), ("3.3.2", "2.12")])
def test_the_delta_jars_follow_the_installed_delta_spark_and_its_scala(monkeypatch, delta, scala):
    monkeypatch.setattr(importlib.metadata, "version", lambda name: {"delta-spark": delta}[name])
    assert delta_package() == f"io.delta:delta-spark_{scala}:{delta}"


def test_the_installed_delta_spark_matches_the_running_spark(spark):
    # delta-spark 4 runs on Spark 4 only, 3.x on Spark 3.5: a mismatched pair fails at the first Delta read
    delta_major = int(importlib.metadata.version("delta-spark").split(".")[0])
    assert int(spark.version.split(".")[0]) == (4 if delta_major >= 4 else 3)
    assert f":delta-spark_{'2.13' if delta_major >= 4 else '2.12'}:" in delta_package()


def test_ddl_schemas_parse_with_not_null_and_nested_types(spark):
    schema = ddl_schema("clip_id STRING NOT NULL, shot_ids ARRAY<STRING>, embedding ARRAY<FLOAT>")
    assert schema == StructType([StructField("clip_id", StringType(), False),
                                 StructField("shot_ids", ArrayType(StringType())),
                                 StructField("embedding", ArrayType(FloatType()))])
    assert TABLES["clips"].schema["clip_id"].nullable is False
    assert TABLES["clips"].domain_columns[:3] == ["clip_id", "video_id", "clip_idx"]


def test_a_table_row_from_a_dict_and_its_ddl_keeps_each_value_in_its_column(spark):
    row = {"name": "good_match", "scorer_version": "s1", "value": 0.4, "objective": "youden",
           "n_clips": 3, "metrics": {"auc": 0.9}, "mlflow_run_id": None}
    (got,) = spark.createDataFrame([row], TABLES["calibrations"].columns).collect()
    assert got.asDict() == row


def test_sql_runs_in_ansi_mode_as_on_spark_4(spark):
    # a bad cast fails (its row goes to `errors`) instead of becoming NULL, on 3.5 as on 4.0
    assert spark.conf.get("spark.sql.ansi.enabled") == "true"
    with pytest.raises(Exception, match="CAST_INVALID_INPUT"):
        spark.sql("SELECT CAST('not a number' AS INT)").collect()
