"""SQL views over the tables, for analysts: `SELECT * FROM panda.<view>`.

`panda-spark create-views` (the pipeline's last-but-one stage) creates them all. Each view is a
query over fully qualified table names from the conf. Clusters keep them in the metastore / Unity
Catalog; the embedded catalog lives in memory, so every embedded session creates them again, like
it registers the tables.

- `clip_captions`: every clip with its selected caption and its source video's metadata.
- `teacher_win_rates`: how often each teacher's caption was selected, overall (`scope = 'all'`)
  and per category (`scope = 'category'`) when the manifest had a `category` column. Every teacher
  with candidates (in that scope) has a row, one that never won with `wins = 0`.
- `clip_length_distribution`: clips per length bucket of one second (the last bucket: ≥ 60 s).
- `clips_per_video`: clips, captioned clips, good matches and covered seconds per source video.
- `matching_score_distribution`: selected captions per matching-score bucket of 0.05.
- `clips_without_good_match`: clips whose best caption scored at or below the threshold, or that
  have no selected caption at all.
- `errors_by_stage`: current errors per stage and class, with the newest example.
- `last_pipeline_run`: the `stage_runs` rows of the newest `panda-spark pipeline` run.

The bucket views carry their bucket's lower bound (`length_s`, `bucket_start`) to sort by, and are
ordered by it (teacher_win_rates by scope, category and wins). SQL does not promise that a query
over a view keeps the view's order (a filter, join or aggregate over it may not): order by those
columns in the query, as the notebooks do.
"""
from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from panda_spark.config import Config
from panda_spark.runs import StageReport
from panda_spark.tables import Lakehouse, qualified_name

log = logging.getLogger(__name__)

VIEWS: dict[str, tuple[tuple[str, ...], str]] = {  # name → (tables it reads, query with {table} names)
    "clip_captions": (("clips", "captions", "videos"), """
        SELECT k.clip_id, k.video_id, k.clip_idx, k.start_s, k.end_s, round(k.end_s - k.start_s, 3) AS duration_s,
               k.start_timecode, k.end_timecode, c.caption, c.teacher, c.matching_score, c.good_match,
               v.title, v.url, v.extra['category'] AS category, v.duration_s AS video_duration_s
        FROM {clips} k LEFT JOIN {captions} c ON c.clip_id = k.clip_id LEFT JOIN {videos} v ON k.video_id = v.video_id"""),
    "teacher_win_rates": (("candidate_captions", "captions", "clips", "videos"), """
        WITH picks AS (  -- every teacher that had a candidate for a clip (won: false), plus the selected ones
            SELECT p.teacher, p.won, v.extra['category'] AS category
            FROM (SELECT DISTINCT clip_id, teacher, false AS won FROM {candidate_captions}
                  UNION ALL SELECT clip_id, teacher, true FROM {captions} WHERE teacher IS NOT NULL) p
            JOIN {clips} k ON p.clip_id = k.clip_id LEFT JOIN {videos} v ON k.video_id = v.video_id),
        wins AS (
            SELECT if(grouping(category) = 1, 'all', 'category') AS scope, category, teacher, count_if(won) AS wins
            FROM picks GROUP BY GROUPING SETS ((teacher), (category, teacher)))
        SELECT scope, category, teacher, wins, sum(wins) OVER (PARTITION BY scope, category) AS clips,
               round(coalesce(wins / nullif(sum(wins) OVER (PARTITION BY scope, category), 0), 0), 4) AS win_rate
        FROM wins WHERE scope = 'all' OR category IS NOT NULL
        ORDER BY scope, category, wins DESC, teacher"""),
    "clip_length_distribution": (("clips",), """
        SELECT least(floor(end_s - start_s), 60) AS length_s, count(*) AS clips,
               round(count(*) / sum(count(*)) OVER (), 4) AS fraction
        FROM {clips} GROUP BY 1 ORDER BY length_s"""),
    "clips_per_video": (("clips", "captions", "videos"), """
        SELECT k.video_id, first(v.title) AS title, first(v.extra['category']) AS category,
               first(v.duration_s) AS video_duration_s, count(*) AS clips, count(c.clip_id) AS captioned_clips,
               count_if(c.good_match) AS good_matches, round(sum(k.end_s - k.start_s), 3) AS clip_seconds,
               round(sum(k.end_s - k.start_s) / first(v.duration_s), 4) AS coverage
        FROM {clips} k LEFT JOIN {captions} c ON c.clip_id = k.clip_id LEFT JOIN {videos} v ON k.video_id = v.video_id
        GROUP BY k.video_id"""),
    "matching_score_distribution": (("captions",), """
        SELECT round(floor(matching_score * 20) / 20, 2) AS bucket_start,
               round(floor(matching_score * 20) / 20 + 0.05, 2) AS bucket_end,
               count(*) AS clips, sum(CAST(good_match AS INT)) AS good_matches,
               round(count(*) / sum(count(*)) OVER (), 4) AS fraction
        FROM {captions} WHERE matching_score IS NOT NULL
        GROUP BY 1, 2 ORDER BY bucket_start"""),
    "clips_without_good_match": (("captions", "clips"), """
        SELECT k.clip_id, k.video_id, k.start_s, k.end_s, c.caption, c.teacher, c.matching_score, c.scorer_version,
               CASE WHEN c.clip_id IS NULL THEN 'not selected' ELSE 'below threshold' END AS reason
        FROM {clips} k LEFT JOIN {captions} c ON c.clip_id = k.clip_id
        WHERE c.clip_id IS NULL OR NOT c.good_match"""),
    "errors_by_stage": (("errors",), """
        SELECT stage, error_class, count(*) AS errors, min(time) AS first_seen, max(time) AS last_seen,
               max_by(key, time) AS newest_key, max_by(message, time) AS newest_message
        FROM {errors} GROUP BY stage, error_class"""),
    "last_pipeline_run": (("stage_runs",), """
        SELECT * FROM {stage_runs}
        WHERE run_id = (SELECT max_by(run_id, started_at) FROM {stage_runs})"""),
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


def run(spark: SparkSession, cfg: Config, run_id: str) -> StageReport:
    """`panda-spark create-views`: (re)create every view of VIEWS, creating missing tables empty."""
    report = StageReport("create-views", run_id)
    created = create_views(spark, cfg)
    report.counts["views"] = len(created)
    return report.finish(rows_in=len(VIEWS), rows_out=len(created))
