# Databricks notebook source
# MAGIC %md
# MAGIC # The dataset: clip lengths, who wins, how well captions match
# MAGIC Plots over the views of `panda-spark create-views`. On Databricks set the `schema` widget to the
# MAGIC conf's catalog + schema (`main.panda`); on a laptop run it as a script:
# MAGIC `python notebooks/03_dataset_overview.py --conf conf/local.yaml` (figures go to `.panda/notebooks/`).

# COMMAND ----------

import matplotlib.pyplot as plt

from panda_spark.notebook import open_notebook

nb = open_notebook(globals())

# COMMAND ----------

# Clip-length histogram (one-second buckets; the last one holds every clip of 60 s or more).
# Panda-70M's clips average 8.5 s.
lengths = nb.sql("SELECT length_s, clips FROM {schema}.clip_length_distribution ORDER BY length_s")
fig, ax = plt.subplots(figsize=(7, 3))
ax.bar(lengths["length_s"], lengths["clips"], width=0.9, align="edge")
ax.set(xlabel="clip length (s)", ylabel="clips", title="Clip lengths")
nb.plot("clip_length_histogram", fig)

# COMMAND ----------

# Teacher win rates: the share of clips whose selected caption came from each teacher
wins = nb.sql("SELECT teacher, wins, clips, win_rate FROM {schema}.teacher_win_rates WHERE scope = 'all' "
              "ORDER BY win_rate DESC, teacher")
fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(wins["teacher"], wins["win_rate"])
ax.invert_yaxis()
ax.set(xlabel="win rate", title="Teacher win rates")
nb.plot("teacher_win_rates", fig)
nb.show(wins)

# COMMAND ----------

# Matching-score distribution of the selected captions; the paper keeps clips scoring above 0.43
scores = nb.sql("SELECT bucket_start, clips, good_matches FROM {schema}.matching_score_distribution "
                "ORDER BY bucket_start")
fig, ax = plt.subplots(figsize=(7, 3))
ax.bar(scores["bucket_start"], scores["clips"], width=0.05, align="edge")
ax.set(xlabel="matching score", ylabel="clips", title="Matching scores of the selected captions")
nb.plot("matching_score_distribution", fig)

# COMMAND ----------

# Clips per source video, and how much of each video the clips cover
nb.show(nb.sql("SELECT video_id, title, clips, captioned_clips, good_matches, clip_seconds, coverage "
               "FROM {schema}.clips_per_video ORDER BY clips DESC, video_id LIMIT 20"))

# COMMAND ----------

# Errors by stage and class: what to fix or re-run
nb.show(nb.sql("SELECT stage, error_class, errors, last_seen, newest_key, newest_message "
               "FROM {schema}.errors_by_stage ORDER BY errors DESC, stage"))

# COMMAND ----------

# The newest pipeline run: rows in, out and errored per stage (all runs: table stage_runs)
nb.show(nb.sql("SELECT run_id, stage, status, rows_in, rows_out, errored, seconds, message "
               "FROM {schema}.last_pipeline_run ORDER BY started_at"))
