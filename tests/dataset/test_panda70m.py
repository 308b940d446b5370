"""The Panda-70M CSV format core: timestamps, writing a row, parsing rows safely. No Spark."""
import csv
import io
import json

import pandas as pd
import pytest

from panda_spark.dataset import panda70m as p
from panda_spark.dataset.importer import READ_ENCODING, duplicate_records, import_record
from panda_spark.dataset.writers import clip_record
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


def _as_read(text: str) -> str:
    """A cell as Spark reads the CSV: one character per byte."""
    return text.encode("utf-8").decode(READ_ENCODING)


def test_bytes_that_are_not_utf8_make_the_record_an_error_naming_row_column_and_offset():
    good = import_record({**{k: _as_read(v) for k, v in PUBLISHED.items()}, "caption": _as_read(
        "['Ein Neuron über Grün.', 'b', 'c']"), "source_file": "d/a.csv", "source_row": 4})
    assert good["status"] == "ok" and good["clips"][0]["caption"] == "Ein Neuron über Grün."
    bad_caption = PUBLISHED["caption"].encode("utf-8").replace(b"neuron", b"neur\xf6n").decode(READ_ENCODING)
    bad = import_record({**PUBLISHED, "caption": bad_caption, "source_file": "d/a.csv", "source_row": 4})
    assert (bad["status"], bad["key"], bad["error_class"]) == ("error", "-2yHu5qgTzM", "InvalidEncoding")
    assert bad["message"] == "a.csv:row4: caption is not UTF-8: byte 8 of the cell is 0xf6"
    assert not bad["clips"] and "neur\\\\xf6n" in bad["input_snapshot"]  # the byte shown, not replaced
    no_id = import_record({**PUBLISHED, "videoID": "id\xff", "source_file": "a.csv", "source_row": 9})
    assert (no_id["key"], no_id["video_id"], no_id["error_class"]) == ("a.csv:row9", None, "InvalidEncoding")


def test_a_repeated_video_id_is_an_error_in_the_same_file_or_with_another_url():
    records = pd.DataFrame([("v", "https://u/1", "b.csv", 7), ("v", "https://u/1", "a.csv", 3),
                            ("v", "https://u/1", "a.csv", 5), ("v", "https://u/2", "c.csv", 1)],
                           columns=["video_id", "url", "source_file", "source_row"])
    out = duplicate_records(records)
    assert list(out["key"]) == ["v@a.csv:row5", "v@c.csv:row1"]  # b.csv: the same video in another file
    assert set(out["error_class"]) == {"DuplicateVideoId"} and list(out["source_row"]) == [5, 1]
    assert out["message"].iloc[1] == ("videoID v at c.csv:row1 (url https://u/2) was already read at a.csv:row3 "
                                      "(url https://u/1); a source video has one row")
    assert json.loads(out["input_snapshot"].iloc[0])["first_row"] == 3
    assert duplicate_records(records.iloc[:2]).empty


def test_forced_pieces_are_merged_back_into_the_detected_shot_they_were_cut_from():
    shots = [{"start_s": 0.0, "end_s": 5.0, "forced": False}, {"start_s": 5.0, "end_s": 10.0, "forced": True},
             {"start_s": 10.0, "end_s": 13.4, "forced": True}, {"start_s": 13.4, "end_s": 16.0, "forced": False},
             {"start_s": 16.0, "end_s": 21.0, "forced": None}]  # imported: a detected shot
    clip = {"start_s": 2.0, "end_s": 20.0, "caption": "c", "matching_score": 0.5, "desirable_filtering": None,
            "shots": shots}
    assert clip_record(clip).shots == ((0.0, 13.4), (13.4, 16.0), (16.0, 21.0))
    assert p.clip_shots(clip_record(clip)) == [["0:00:00.000", "0:00:11.400"], ["0:00:11.400", "0:00:14.000"],
                                               ["0:00:14.000", "0:00:18.000"]]
    # a clip starting inside a long take: its first piece stands for the part of the shot in the clip
    later = {**clip, "start_s": 7.0, "shots": shots[1:4]}
    assert clip_record(later).shots == ((5.0, 13.4), (13.4, 16.0))
    assert p.detected_shots([]) == ()


def test_desirable_filtering_is_written_only_where_every_label_is_known():
    known = [p.ClipRecord(0.0, 2.0, "a", 0.5, "desirable"), p.ClipRecord(2.0, 4.0, "b", 0.2, "3_screen_in_screen")]
    assert p.build_row("v", "u", known)["desirable_filtering"] == "['desirable', '3_screen_in_screen']"
    unknown = [known[0], p.ClipRecord(2.0, 4.0, "b", 0.2, None)]
    row = p.build_row("v", "u", unknown)
    assert row["desirable_filtering"] == ""  # the release has no label for "unknown"
    (cells,) = list(csv.DictReader(io.StringIO(p.header_line() + p.csv_line(row))))
    assert [c.desirable_filtering for c in p.parse_row(cells).clips] == [None, None]
