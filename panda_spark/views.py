"""SQL views over the tables, for analysts: `SELECT * FROM panda.<view>`.

Each view is a query over fully qualified table names from the conf. Clusters keep them in the
metastore / Unity Catalog once a stage has created them; the embedded catalog lives in memory, so
every embedded session creates them again, like it registers the tables.

- `teacher_win_rates`: how often each teacher's caption was selected, overall (`scope = 'all'`)
  and per category (`scope = 'category'`) when the manifest had a `category` column.
- `matching_score_distribution`: selected captions per matching-score bucket of 0.05.
- `clips_without_good_match`: clips whose best caption scored at or below the threshold, or that
  have no selected caption at all.
"""
from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from panda_spark.config import Config
from panda_spark.tables import Lakehouse, qualified_name

log = logging.getLogger(__name__)

VIEWS: dict[str, tuple[tuple[str, ...], str]] = {  # name → (tables it reads, query with {table} names)
    "teacher_win_rates": (("captions", "clips", "videos"), """
        WITH selected AS (
            SELECT c.teacher, v.extra['category'] AS category
            FROM {captions} c JOIN {clips} k ON c.clip_id = k.clip_id LEFT JOIN {videos} v ON k.video_id = v.video_id
            WHERE c.teacher IS NOT NULL),
        wins AS (
            SELECT 'all' AS scope, CAST(NULL AS STRING) AS category, teacher, count(*) AS wins
            FROM selected GROUP BY teacher
            UNION ALL
            SELECT 'category', category, teacher, count(*) FROM selected WHERE category IS NOT NULL
            GROUP BY category, teacher)
        SELECT scope, category, teacher, wins, sum(wins) OVER (PARTITION BY scope, category) AS clips,
               round(wins / sum(wins) OVER (PARTITION BY scope, category), 4) AS win_rate
        FROM wins"""),
    "matching_score_distribution": (("captions",), """
        SELECT round(floor(matching_score * 20) / 20, 2) AS bucket_start,
               round(floor(matching_score * 20) / 20 + 0.05, 2) AS bucket_end,
               count(*) AS clips, sum(CAST(good_match AS INT)) AS good_matches,
               round(count(*) / sum(count(*)) OVER (), 4) AS fraction
        FROM {captions} WHERE matching_score IS NOT NULL
        GROUP BY 1, 2"""),
    "clips_without_good_match": (("captions", "clips"), """
        SELECT k.clip_id, k.video_id, k.start_s, k.end_s, c.caption, c.teacher, c.matching_score, c.scorer_version,
               CASE WHEN c.clip_id IS NULL THEN 'not selected' ELSE 'below threshold' END AS reason
        FROM {clips} k LEFT JOIN {captions} c ON c.clip_id = k.clip_id
        WHERE c.clip_id IS NULL OR NOT c.good_match"""),
}


def create_views(spark: SparkSession, cfg: Config, only_existing_tables: bool = False) -> list[str]:
    """CREATE OR REPLACE every view; with `only_existing_tables`, skip views whose tables are not
    there yet (instead of creating empty tables). Returns the names created."""
    lake = Lakehouse(spark, cfg, run_id="views")
    created = []
    for view, (tables, query) in VIEWS.items():
        if only_existing_tables and not all(spark.catalog.tableExists(lake.name(t).replace("`", "")) for t in tables):
            continue
        lake.ensure(*tables)
        name = qualified_name(cfg, view)
        spark.sql(f"CREATE OR REPLACE VIEW {name} AS {query.format(**{t: lake.name(t) for t in tables})}")
        created.append(name)
    log.info("views: %s", ", ".join(created) or "none (tables not created yet)")
    return created
