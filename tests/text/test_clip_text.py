from panda_spark.text.clip_text import (
    PROMPT_WITH_TEXT, PROMPT_WITHOUT_TEXT, build_prompt, clean_cue_text, clip_subtitles, truncate,
)
from panda_spark.text.subtitles import parse_subtitle_bytes
from tests.conftest import shared_data


def cue(start, end, text):
    return {"start_s": start, "end_s": end, "text": text}


def test_markup_entities_and_positioning_codes_are_stripped():
    assert clean_cue_text("<c.colorE5E5E5>we&#39;re</c> <00:00:01.520><c> here</c>\n{\\an8} &amp; <i>there</i>  ") == [
        "we're here", "& there"]


def test_only_cues_overlapping_the_clip_are_used():
    cues = [cue(0, 2, "before"), cue(1.5, 3, "straddles start"), cue(4, 5, "inside"),
            cue(5.9, 7, "straddles end"), cue(6, 8, "starts at end"), cue(8, 9, "after")]
    assert clip_subtitles(cues, 2.0, 6.0, 100) == "straddles start inside straddles end"


def test_rolling_auto_captions_lose_their_repeated_lines():
    cues = [cue(0, 2, "so today we"), cue(2, 4, "so today we\nare making pasta"),
            cue(4, 6, "are making pasta\nwith tomatoes"), cue(6, 8, "with tomatoes")]
    assert clip_subtitles(cues, 0, 8, 100) == "so today we are making pasta with tomatoes"


def test_budget_cuts_at_whole_tokens_by_the_given_counter():
    assert truncate("one two three four five", 3) == "one two three"
    chars = len  # e.g. a tokenizer that counts characters
    assert truncate("one two three four", 9, chars) == "one two"
    assert clip_subtitles([cue(0, 1, "a b c d e f")], 0, 1, 4) == "a b c d"


def test_prompts_carry_the_clip_text_or_fall_back_to_the_plain_prompt():
    prompt = build_prompt(PROMPT_WITH_TEXT, PROMPT_WITHOUT_TEXT, 'he said "hi"', "Pasta", "Quick {dinner}")
    assert 'The subtitles of the video: "he said \u201dhi\u201d".' in prompt
    assert 'Some descriptions of the video: ["Pasta", "Quick {dinner}"].' in prompt
    assert prompt.endswith("Please faithfully summarize the video in one sentence.")
    assert build_prompt(PROMPT_WITH_TEXT, PROMPT_WITHOUT_TEXT, "", None, None) == PROMPT_WITHOUT_TEXT


def test_real_subtitles_of_a_clip_range():
    _, cues = parse_subtitle_bytes(shared_data("subtitles", "--1ApFKwvjE.vtt").read_bytes())
    text = clip_subtitles([c.__dict__ for c in cues], 10.0, 20.0, 100)
    assert text == ("[Scene 1] A man is playing with two lions in a zoo. "
                    "[Scene 2] A lion is hugging a man, and a lion is jumping up and down. "
                    "[Scene 3] A man is driving a vehicle in a safari park.")
