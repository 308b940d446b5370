# Databricks notebook source
# MAGIC %md
# MAGIC # Source videos and ingest errors
# MAGIC What `panda-spark ingest` wrote. Set `schema` to the conf's `catalog.catalog` + `catalog.schema`
# MAGIC (`main.panda` with `conf/databricks.yaml`, `panda` locally). Locally, run the same queries with
# MAGIC `panda-spark sql "<query>"`.

# COMMAND ----------

dbutils.widgets.text("schema", "main.panda")  # noqa: F821 (a Databricks notebook global)
schema = dbutils.widgets.get("schema")  # noqa: F821

# COMMAND ----------

display(spark.sql(f"""  # noqa: F821
SELECT video_id, round(duration_s, 1) AS duration_s, fps_rational, frame_count,
       concat(width, 'x', height) AS size, has_audio, size(subtitles) AS cues, title
FROM {schema}.videos ORDER BY duration_s DESC"""))

# COMMAND ----------

# Hours of source video per resolution
display(spark.sql(f"""  # noqa: F821
SELECT concat(width, 'x', height) AS size, count(*) AS videos, round(sum(duration_s) / 3600, 2) AS hours
FROM {schema}.videos GROUP BY 1 ORDER BY hours DESC"""))

# COMMAND ----------

# What failed, by class
display(spark.sql(f"""  # noqa: F821
SELECT stage, error_class, count(*) AS inputs, max(time) AS last_seen, first(message) AS example
FROM {schema}.errors GROUP BY stage, error_class ORDER BY inputs DESC"""))
