# Databricks notebook source
# MAGIC %md
# MAGIC # Source videos and their errors
# MAGIC What `panda-spark ingest` wrote. On Databricks set the `schema` widget to the conf's catalog +
# MAGIC schema (`main.panda`); on a laptop: `python notebooks/01_videos_and_errors.py --conf conf/local.yaml`.

# COMMAND ----------

from panda_spark.notebook import open_notebook

nb = open_notebook(globals())

# COMMAND ----------

nb.show(nb.sql("""
SELECT video_id, round(duration_s, 1) AS duration_s, fps_rational, frame_count,
       concat(width, 'x', height) AS size, has_audio, size(subtitles) AS cues, title
FROM {schema}.videos ORDER BY duration_s DESC, video_id LIMIT 50"""))

# COMMAND ----------

# Hours of source video per resolution
nb.show(nb.sql("""
SELECT concat(width, 'x', height) AS size, count(*) AS videos, round(sum(duration_s) / 3600, 2) AS hours
FROM {schema}.videos GROUP BY 1 ORDER BY hours DESC"""))

# COMMAND ----------

# What failed, by stage and class (view errors_by_stage)
nb.show(nb.sql("SELECT stage, error_class, errors, last_seen, newest_key, newest_message "
               "FROM {schema}.errors_by_stage ORDER BY errors DESC, stage"))
