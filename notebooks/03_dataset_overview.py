# Databricks notebook source
# MAGIC %md
# MAGIC # The dataset: clip lengths, who wins, how well captions match
# MAGIC Plots over the views of `panda-spark create-views`. On Databricks set the `schema` widget to the
# MAGIC conf's catalog + schema (`main.panda`) and, to draw another good-match threshold than the
# MAGIC calibrated one, `good_match_threshold`; on a laptop run it as a script:
# MAGIC `python notebooks/03_dataset_overview.py --conf conf/local.yaml` (figures go to `.panda/notebooks/`).

# COMMAND ----------

from panda_spark.notebook import open_notebook, plot_clip_lengths, plot_matching_scores, plot_teacher_win_rates

nb = open_notebook(globals())

# COMMAND ----------

# Clip-length histogram (one-second buckets; the last one holds every clip of 60 s or more).
# Panda-70M's clips average 8.5 s.
lengths = nb.sql("SELECT length_s, clips FROM {schema}.clip_length_distribution ORDER BY length_s")
nb.plot("clip_length_histogram", plot_clip_lengths(lengths))

# COMMAND ----------

# Teacher win rates: the share of clips whose selected caption came from each teacher (0 for a
# teacher whose candidates never won)
wins = nb.sql("SELECT teacher, wins, clips, win_rate FROM {schema}.teacher_win_rates WHERE scope = 'all' "
              "ORDER BY win_rate DESC, teacher")
nb.plot("teacher_win_rates", plot_teacher_win_rates(wins))
nb.show(wins)

# COMMAND ----------

# Matching-score distribution of the selected captions, with the good-match threshold select grades
# by (select.good_match_threshold, or the one calibrate-selection stored; the paper keeps > 0.43)
scores = nb.sql("SELECT bucket_start, clips, good_matches FROM {schema}.matching_score_distribution "
                "ORDER BY bucket_start")
nb.plot("matching_score_distribution", plot_matching_scores(scores, nb.good_match_threshold()))

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
