# Databricks notebook source
# MAGIC %md
# MAGIC # Caption selection: who wins, what to look at
# MAGIC What `panda-spark select` wrote (`captions`) and the views over it. On Databricks set the
# MAGIC `schema` widget to the conf's catalog + schema (`main.panda`); on a laptop:
# MAGIC `python notebooks/02_caption_selection.py --conf conf/local.yaml`.

# COMMAND ----------

from panda_spark.notebook import open_notebook

nb = open_notebook(globals())

# COMMAND ----------

# Teacher win rates per category, when the manifest had a `category` column
nb.show(nb.sql("""
SELECT category, teacher, wins, win_rate FROM {schema}.teacher_win_rates WHERE scope = 'category'
ORDER BY category, win_rate DESC, teacher"""))

# COMMAND ----------

# Clips without a good match: candidates for re-captioning or for the label queue
nb.show(nb.sql("SELECT reason, count(*) AS clips FROM {schema}.clips_without_good_match GROUP BY reason ORDER BY reason"))

# COMMAND ----------

# The scorer behind each selection, and how far its choices sit above the threshold
nb.show(nb.sql("""
SELECT scorer_version, count(*) AS clips, round(avg(matching_score), 3) AS mean_score,
       round(avg(CAST(good_match AS INT)), 3) AS good_match_rate, max(selected_at) AS last_selected
FROM {schema}.captions GROUP BY scorer_version ORDER BY last_selected DESC"""))

# COMMAND ----------

# A sample of clips with their selected caption and source metadata (view clip_captions)
nb.show(nb.sql("""
SELECT video_id, clip_idx, start_timecode, end_timecode, teacher, round(matching_score, 3) AS score, caption
FROM {schema}.clip_captions ORDER BY video_id, clip_idx LIMIT 20"""))
