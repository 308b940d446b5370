from pathlib import Path

import pytest

from panda_spark.errors import MalformedSubtitles, SubtitleEncoding
from panda_spark.text.subtitles import (
    Cue,
    decode_subtitle_bytes,
    looks_like_inline_subtitles,
    parse_subtitle_bytes,
    parse_subtitles,
)

SUBTITLES_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "subtitles"

VTT = "\r\n".join([
    "WEBVTT - Some title",
    "Kind: captions",
    "",
    "NOTE this is a comment",
    "00:00:05.000 --> 00:00:06.000 is not a cue",
    "",
    "STYLE",
    "::cue { color: red }",
    "",
    "intro",
    "00:01.500 --> 00:03.250 align:start position:10%",
    "  <i>Hello</i> there  ",
    "second line",
    "",
    "00:00:04.000 --> 00:00:05.125",
    "no id here",
    "",
    "3",
    "1:02:03.004 --> 1:02:04.000",
    "<c.yellow>late</c>",
    "",
])

SRT = (
    "1\n00:00:01,000 --> 00:00:02,500\nFirst line\nsecond line\n\n"
    "2\n00:00:03.000 --> 00:01:00,000\n  Spaced  \n\n"
)


def test_webvtt_blocks_ids_settings_crlf():
    fmt, cues = parse_subtitles(VTT)
    assert fmt == "vtt"
    assert cues == [
        Cue(1.5, 3.25, "<i>Hello</i> there\nsecond line"),
        Cue(4.0, 5.125, "no id here"),
        Cue(3723.004, 3724.0, "<c.yellow>late</c>"),
    ]


def test_webvtt_cr_only_line_endings():
    fmt, cues = parse_subtitles("WEBVTT\r\r00:01.000 --> 00:02.000\rhi\r")
    assert (fmt, cues) == ("vtt", [Cue(1.0, 2.0, "hi")])


def test_srt():
    fmt, cues = parse_subtitles(SRT)
    assert fmt == "srt"
    assert cues == [Cue(1.0, 2.5, "First line\nsecond line"), Cue(3.0, 60.0, "Spaced")]


def test_utf8_bom_accepted():
    data = b"\xef\xbb\xbfWEBVTT\n\n00:00.000 --> 00:01.000\ncaf\xc3\xa9\n"
    assert decode_subtitle_bytes(data).startswith("WEBVTT")
    assert parse_subtitle_bytes(data) == ("vtt", [Cue(0.0, 1.0, "café")])


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_with_bom_accepted(codec):
    text = "1\n00:00:01,000 --> 00:00:02,000\nnaïve\n"
    bom = b"\xff\xfe" if codec == "utf-16-le" else b"\xfe\xff"
    assert parse_subtitle_bytes(bom + text.encode(codec)) == ("srt", [Cue(1.0, 2.0, "naïve")])


@pytest.mark.parametrize("prefix", [b"", b"\xef\xbb\xbf"])
def test_latin1_rejected_with_offset(prefix):
    data = prefix + b"WEBVTT\n\n00:00.000 --> 00:01.000\ncaf\xe9\n"
    offset = data.index(b"caf") + 3  # the Latin-1 e-acute, counted in the original bytes
    with pytest.raises(SubtitleEncoding) as exc:
        decode_subtitle_bytes(data)
    assert "not valid UTF-8" in exc.value.message
    assert f"byte offset {offset} " in exc.value.message


def test_bad_timing_line_names_line_number():
    text = "WEBVTT\n\n00:00.000 --> 00:01.000\nok\n\n00:02.000 --> 00:0x.000\nbad\n"
    with pytest.raises(MalformedSubtitles) as exc:
        parse_subtitles(text)
    assert exc.value.message.startswith("line 6:")
    assert "00:0x.000" in exc.value.message


def test_end_before_start():
    with pytest.raises(MalformedSubtitles, match=r"line 2: cue ends before it starts"):
        parse_subtitles("1\n00:00:05,000 --> 00:00:04,000\nx\n")


def test_block_without_timing_line():
    text = "WEBVTT\n\n00:00.000 --> 00:01.000\nok\n\njust some\nstray text\n"
    with pytest.raises(MalformedSubtitles, match=r"line 6: cue block has no timing line"):
        parse_subtitles(text)


def test_garbage_without_cues():
    with pytest.raises(MalformedSubtitles, match=r"line 1"):
        parse_subtitles("this is not\na subtitle file\n")


def test_empty_input_is_srt_with_no_cues():
    # No WEBVTT header, so empty input is classified "srt" by the detection rule.
    assert parse_subtitles("") == ("srt", [])
    assert parse_subtitles(" \r\n\n") == ("srt", [])
    assert parse_subtitle_bytes(b"") == ("srt", [])


def test_header_only_webvtt_has_no_cues():
    assert parse_subtitles("WEBVTT\n\n") == ("vtt", [])
    assert parse_subtitles("WEBVTT - title\nKind: captions\n\nNOTE nothing\n") == ("vtt", [])


@pytest.mark.parametrize("value", [
    "WEBVTT\n\n00:00.000 --> 00:01.000\nhi",
    "1\n00:00:01,000 --> 00:00:02,000\nhello\n",
    "00:00:01,000 --> 00:00:02,000",
])
def test_inline_content_detected(value):
    assert looks_like_inline_subtitles(value) is True


@pytest.mark.parametrize("value", [
    "--1ApFKwvjE.vtt",
    "/x/---h-Df_mHE.vtt",
    "s3://bucket/a.srt",
    "/data/subs/x.srt",
])
def test_paths_not_inline(value):
    assert looks_like_inline_subtitles(value) is False


def _real_files():
    if not SUBTITLES_DIR.is_dir():
        pytest.skip(f"{SUBTITLES_DIR} not present")
    files = sorted(SUBTITLES_DIR.glob("*.vtt"))
    if not files:
        pytest.skip(f"no .vtt files in {SUBTITLES_DIR}")
    return files


def test_real_dataset_files():
    for path in _real_files():
        fmt, cues = parse_subtitle_bytes(path.read_bytes())
        assert fmt == "vtt", path.name
        assert cues, path.name
        starts = [c.start_s for c in cues]
        assert starts == sorted(starts), path.name
        assert all(c.end_s > c.start_s for c in cues), path.name
        arrows = sum("-->" in line for line in path.read_text("utf-8").splitlines())
        assert len(cues) == arrows, path.name


def test_real_file_first_cue():
    path = SUBTITLES_DIR / "--1ApFKwvjE.vtt"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    data = path.read_bytes()
    _, cues = parse_subtitle_bytes(data)
    first = cues[0]
    assert first.start_s == pytest.approx(9.08)
    assert first.end_s == pytest.approx(15.16)
    assert first.text == "[Scene 1] A man is playing with two lions in a zoo."
    assert len(cues) == sum("-->" in line for line in data.decode("utf-8").splitlines())
