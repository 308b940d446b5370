# Databricks notebook source
# MAGIC %md
# MAGIC # Caption selection: who wins, how well captions match, what to look at
# MAGIC What `panda-spark select` wrote (`captions`) and the views it keeps (`teacher_win_rates`,
# MAGIC `matching_score_distribution`, `clips_without_good_match`). Set `schema` to the conf's
# MAGIC `catalog.catalog` + `catalog.schema` (`main.panda` with `conf/databricks.yaml`, `panda` locally;
# MAGIC locally run the same queries with `panda-spark sql "<query>"`).

# COMMAND ----------

dbutils.widgets.text("schema", "main.panda")  # noqa: F821 (a Databricks notebook global)
schema = dbutils.widgets.get("schema")  # noqa: F821

# COMMAND ----------

# Teacher win rates overall (bar chart: teacher × win_rate)
display(spark.sql(f"""  # noqa: F821
SELECT teacher, wins, clips, win_rate FROM {schema}.teacher_win_rates WHERE scope = 'all' ORDER BY win_rate DESC"""))

# COMMAND ----------

# ... and per category, when the manifest had a `category` column
display(spark.sql(f"""  # noqa: F821
SELECT category, teacher, wins, win_rate FROM {schema}.teacher_win_rates WHERE scope = 'category'
ORDER BY category, win_rate DESC"""))

# COMMAND ----------

# Matching-score distribution (bar chart: bucket_start × clips); the paper keeps score > 0.43
display(spark.sql(f"""  # noqa: F821
SELECT bucket_start, clips, good_matches, fraction FROM {schema}.matching_score_distribution ORDER BY bucket_start"""))

# COMMAND ----------

# Clips without a good match: candidates for re-captioning or for the label queue
display(spark.sql(f"""  # noqa: F821
SELECT reason, count(*) AS clips FROM {schema}.clips_without_good_match GROUP BY reason"""))

# COMMAND ----------

# The scorer behind each selection, and how far its choices sit above the threshold
display(spark.sql(f"""  # noqa: F821
SELECT scorer_version, count(*) AS clips, round(avg(matching_score), 3) AS mean_score,
       round(avg(CAST(good_match AS INT)), 3) AS good_match_rate, max(selected_at) AS last_selected
FROM {schema}.captions GROUP BY scorer_version ORDER BY last_selected DESC"""))
