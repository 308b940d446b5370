"""The Panda-70M CSV format core: timestamps, writing a row, parsing rows safely. No Spark."""
import csv
import io

import pytest

from panda_spark.dataset import panda70m as p
from panda_spark.dataset.importer import import_record
from panda_spark.split.core import timecode

# A record of the released panda70m_training_*.csv (as quoted in public code that reads them).
PUBLISHED = {
    "videoID": "-2yHu5qgTzM",
    "url": "https://www.youtube.com/watch?v=-2yHu5qgTzM",
    "timestamp": "[['0:01:20.880', '0:01:23.983'], ['0:02:31.151', '0:02:34.320'], ['0:03:28.841', '0:03:33.680']]",
    "caption": "['A neuron in a black background.', 'A woman is standing on a black background and talking to "
               "the camera.', 'There is a whiteboard with equations on it, and a man and a woman are standing in "
               "front of it.']",
    "matching_score": "[0.451416015625, 0.4990234375, 0.434814453125]",
    "desirable_filtering": "['1_still_foreground_image', 'desirable', 'desirable']",
    "shot_boundary_detection": "[[['0:00:00.000', '0:00:03.069']], [['0:00:00.000', '0:00:03.169']], "
                               "[['0:00:00.000', '0:00:02.702'], ['0:00:02.736', '0:00:04.838']]]",
}


def _records(video: p.ParsedVideo) -> list[p.ClipRecord]:
    return [p.ClipRecord(c.start_s, c.end_s, c.caption, c.matching_score, c.desirable_filtering,
                         tuple((a / 1e6, b / 1e6) for a, b in c.shots)) for c in video.clips]


def test_timestamps_are_truncated_to_the_millisecond_like_the_release_and_the_splitter():
    assert p.format_timestamp(9.342) == "0:00:09.342"
    assert p.format_timestamp(3725.5) == "1:02:05.500"
    assert p.format_timestamp(0.0) == "0:00:00.000"
    assert p.format_timestamp(100 * 3600 + 59.9999) == "100:00:59.999"
    for frame, fps in [(1, 30), (280, 29.97), (9999, 23.976), (7, 25)]:
        assert p.format_timestamp(frame / fps) == timecode(frame, fps)
    assert p.parse_timestamp("0:01:20.880") == 80_880_000
    assert p.parse_timestamp("12:00:00") == 43_200_000_000
    for bad in ["0:1:20.880", "0:01:60.000", "80.88", "-0:00:01.000", "0:00:01,000", 5]:
        with pytest.raises(p.MalformedTimestamp):
            p.parse_timestamp(bad)


def test_a_published_record_parses_and_is_written_back_cell_for_cell():
    video = p.parse_row(PUBLISHED)
    assert (video.video_id, video.url) == ("-2yHu5qgTzM", "https://www.youtube.com/watch?v=-2yHu5qgTzM")
    assert [(c.start_us, c.end_us) for c in video.clips] == [
        (80_880_000, 83_983_000), (151_151_000, 154_320_000), (208_841_000, 213_680_000)]
    assert [c.matching_score for c in video.clips] == [0.451416015625, 0.4990234375, 0.434814453125]
    assert video.clips[2].shots == ((208_841_000, 211_543_000), (211_577_000, 213_679_000))
    assert video.clips[0].desirable_filtering == "1_still_foreground_image"
    assert p.build_row(video.video_id, video.url, _records(video)) == PUBLISHED


def test_csv_quoting_matches_pandas_and_captions_with_quotes_round_trip():
    clips = [
        p.ClipRecord(0.0, 8.072, "A close up of an elephant's head and trunk.", 0.5, "desirable", ((0.0, 8.072),)),
        p.ClipRecord(8.072, 12.5, 'He says "it\'s fine", twice.', 0.25, "0_low_desirable_score"),
        p.ClipRecord(12.5, 13.0, "Tabs\tand a newline\nand ünïcödé", 0.75, "desirable"),
    ]
    row = p.build_row("-demo", "https://example.invalid/v?x=1", clips)
    assert row["caption"] == ("[\"A close up of an elephant's head and trunk.\", 'He says \"it\\'s fine\", twice.', "
                              "'Tabs\\tand a newline\\nand ünïcödé']")
    assert row["shot_boundary_detection"] == "[[['0:00:00.000', '0:00:08.072']], [], []]"
    line = p.csv_line(row)
    assert line.startswith('-demo,https://example.invalid/v?x=1,"[[\'0:00:00.000\', \'0:00:08.072\'], ')
    assert '"[""A close up of an elephant\'s head and trunk."", ' in line and line.endswith("]\"\n")
    assert p.header_line() == ("videoID,url,timestamp,caption,matching_score,desirable_filtering,"
                               "shot_boundary_detection\n")
    (cells,) = list(csv.DictReader(io.StringIO(p.header_line() + line)))
    back = p.parse_row(cells)
    assert [c.caption for c in back.clips] == [c.caption for c in clips]
    assert [c.matching_score for c in back.clips] == [0.5, 0.25, 0.75]
    assert back.clips[1].shots == ()


def test_files_from_before_the_filtering_release_lack_the_last_two_columns():
    old = {k: v for k, v in PUBLISHED.items() if k not in ("desirable_filtering", "shot_boundary_detection")}
    video = p.parse_row(old)
    assert len(video.clips) == 3
    assert all(c.desirable_filtering is None and c.shots is None for c in video.clips)


@pytest.mark.parametrize("change, error", [
    ({"videoID": None}, "MissingField"),
    ({"videoID": "two words"}, "MalformedVideoId"),
    ({"url": "  "}, "MissingField"),
    ({"caption": "['only one', 'and two']"}, "MisalignedLists"),
    ({"caption": "['a', 'b', 'c'"}, "MalformedList"),
    ({"caption": "['a', ['b'], 'c']"}, "MalformedList"),
    ({"caption": "['a', 'b', 3]"}, "MalformedList"),
    ({"caption": "['a', '   ', 'c']"}, "MalformedList"),
    ({"caption": "{'a': 1}"}, "MalformedList"),
    ({"caption": "['a', 'b' + 'c', 'd']"}, "MalformedList"),
    ({"matching_score": "[0.5, 'high', 0.4]"}, "InvalidScore"),
    ({"matching_score": "[0.5, 1e999, 0.4]"}, "InvalidScore"),
    ({"matching_score": "[0.5, True, 0.4]"}, "MalformedList"),
    ({"matching_score": "[0.5, nan, 0.4]"}, "MalformedList"),
    ({"timestamp": "[['0:00:05.000', '0:00:01.000'], ['0:02:31.151', '0:02:34.320'], ['0:03:28.841', '0:03:33.680']]"},
     "InvalidTimeRange"),
    ({"timestamp": "[['5 s', '0:00:09.000'], ['0:02:31.151', '0:02:34.320'], ['0:03:28.841', '0:03:33.680']]"},
     "MalformedTimestamp"),
    ({"timestamp": "[['0:00:01.000'], ['0:02:31.151', '0:02:34.320'], ['0:03:28.841', '0:03:33.680']]"},
     "MalformedList"),
    ({"timestamp": "[['0:01:20.880', '0:01:23.983'], ['0:01:20.880', '0:01:23.983'], ['0:03:28.841', '0:03:33.680']]"},
     "DuplicateClip"),
    ({"timestamp": "[]", "caption": "[]", "matching_score": "[]"}, "MisalignedLists"),
    ({"desirable_filtering": "['desirable', 'desirable']"}, "MisalignedLists"),
    ({"shot_boundary_detection": "[[['0:00:00.000']], [], []]"}, "MalformedList"),
    ({"shot_boundary_detection": "[[[['0:00:00.000', '0:00:01.000']]], [], []]"}, "MalformedList"),
    ({"caption": "[" + "'x' * 1000, " * 3 + "]"}, "MalformedList"),
    ({"caption": "['" + "x" * p.MAX_CELL_CHARS + "']"}, "FieldTooLong"),
    ({"caption": "[" * 100_000}, "MalformedList"),
])
def test_a_malformed_record_raises_its_error_class(change, error):
    with pytest.raises(p.InputError) as raised:
        p.parse_row({**PUBLISHED, **change})
    assert raised.value.error_class == error


def test_code_in_a_list_cell_is_rejected_without_running(tmp_path):
    marker = tmp_path / "pwned"
    payloads = [f"__import__('os').system('touch {marker}')",
                f"[__import__('os').system('touch {marker}'), 'b', 'c']",
                f"[(lambda: open('{marker}', 'w'))(), 'b', 'c']",
                f"['a', open('{marker}', 'w').name, 'c']"]
    for payload in payloads:
        result = import_record({**PUBLISHED, "caption": payload, "source_file": "x.csv", "source_row": 7})
        assert (result["status"], result["error_class"], result["key"]) == ("error", "MalformedList", "-2yHu5qgTzM")
    assert not marker.exists()


def test_import_record_gives_deterministic_ids_and_a_row_key_when_the_id_is_missing():
    first = import_record({**PUBLISHED, "source_file": "a.csv", "source_row": 3})
    again = import_record({**PUBLISHED, "source_file": "b.csv", "source_row": 9})
    assert first["status"] == "ok" and first["clips"] == again["clips"] and first["shots"] == again["shots"]
    assert len({c["clip_id"] for c in first["clips"]}) == 3 and len(first["shots"]) == 4
    assert first["clips"][2]["shot_ids"] == [s["shot_id"] for s in first["shots"][2:]]
    assert first["clips"][0]["start_timecode"] == "0:01:20.880"
    missing = import_record({**PUBLISHED, "videoID": None, "source_file": "dir/p.csv", "source_row": 12})
    assert (missing["key"], missing["error_class"]) == ("p.csv:row12", "MissingField")
    assert '"source_row": 12' in missing["input_snapshot"]
