from datetime import date

import pytest

from kirinuki.parse.grammar import DateParts
from kirinuki.parse.post_date import infer_post_date, resolve


def d(raw: str, y, m, dd) -> DateParts:
    return DateParts(raw, y, m, dd)


def test_seed_shape_year_less_dates_months_after_the_explicit_ones_belong_to_the_next_year():
    parts = [d("", 2023, 10, 21), d("", 2023, 11, 10), d("", None, 4, 9), d("", None, 3, 20)]
    post = infer_post_date(parts, "", None, caption=d("", 2023, 11, 9))
    assert (post.year, post.rule, post.date, post.inferred) == (2024, "nearest_explicit", date(2024, 4, 9), True)


def test_year_less_dates_after_the_explicit_ones_share_their_year():
    post = infer_post_date([d("", 2024, 5, 2), d("", None, 6, 1)], "", None)
    assert (post.year, post.rule, post.date) == (2024, "nearest_explicit", date(2024, 6, 1))


def test_a_day_before_the_explicit_date_is_the_same_year_not_the_next():
    # the issue's post: 【2019年3月5日 読売】, 【3月5日 AFP】 and (3月4日 時事) of the same events
    parts = [d("2019年3月5日", 2019, 3, 5), d("3月5日", None, 3, 5), d("3月4日", None, 3, 4)]
    post = infer_post_date(parts, "", None)
    assert (post.year, post.rule, post.date) == (2019, "nearest_explicit", date(2019, 3, 5))
    assert [resolve(p, post)[0] for p in parts] == [date(2019, 3, 5), date(2019, 3, 5), date(2019, 3, 4)]


def test_dates_across_new_year_each_take_the_year_that_keeps_them_together():
    parts = [d("", 2023, 12, 30), d("12月28日", None, 12, 28), d("1月3日", None, 1, 3)]
    post = infer_post_date(parts, "", None)
    assert (post.date, post.rule) == (date(2024, 1, 3), "nearest_explicit")
    assert [resolve(p, post)[0] for p in parts[1:]] == [date(2023, 12, 28), date(2024, 1, 3)]


def test_the_given_date_wins_over_any_inference():
    parts = [d("", 2019, 3, 5), d("3月4日", None, 3, 4), d("12月1日", None, 12, 1)]
    inferred = infer_post_date(parts, "", None)
    given = infer_post_date(parts, "", date(2020, 1, 10))
    # inferred, 12月1日 is the one three months before 2019-03-05; the export says the post is of 2020
    assert (inferred.date, resolve(parts[2], inferred)[0]) == (date(2019, 3, 5), date(2018, 12, 1))
    assert (given.date, given.inferred, given.rule) == (date(2020, 1, 10), False, "metadata")
    assert [resolve(p, given)[0] for p in parts[1:]] == [date(2019, 3, 4), date(2019, 12, 1)]


def test_a_leap_day_takes_the_latest_leap_year_on_or_before_the_post():
    post = infer_post_date([d("", 2024, 1, 10), d("2月29日", None, 2, 29)], "", None)
    assert (post.date, resolve(d("2月29日", None, 2, 29), post)) == (date(2024, 2, 29), (date(2024, 2, 29), True, None))


def test_caption_year_is_a_floor_not_evidence_of_the_convention():
    # Photo credits always carry the year; a caption in January must not push 1月15日 to next year.
    parts = [d("", 2024, 5, 28), d("", None, 1, 15), d("", None, 1, 20)]
    post = infer_post_date(parts, "", None, caption=d("", 2025, 1, 16))
    assert (post.year, post.date) == (2025, date(2025, 1, 20))


def test_caption_alone_and_text_mentions_are_fallbacks():
    post = infer_post_date([d("", None, 4, 1)], "", None, caption=d("", 2023, 11, 9))
    assert (post.year, post.rule) == (2024, "caption_year")
    post = infer_post_date([d("", None, 4, 1)], "2022年1月と2023年12月の出来事", None)
    assert (post.year, post.rule) == (2024, "text_year")


def test_no_evidence_leaves_the_year_unknown():
    post = infer_post_date([d("4月1日", None, 4, 1)], "年の手がかりなし", None)
    assert (post.year, post.rule, post.date) == (None, "unknown", None)
    assert resolve(d("4月1日", None, 4, 1), post) == (None, False, "year_unknown")


def test_metadata_date_wins_and_wraps_year_less_dates_into_the_previous_year():
    post = infer_post_date([d("", 2020, 1, 1)], "", date(2024, 1, 5))
    assert (post.date, post.inferred, post.rule) == (date(2024, 1, 5), False, "metadata")
    assert resolve(d("12月28日", None, 12, 28), post) == (date(2023, 12, 28), True, None)
    assert resolve(d("1月3日", None, 1, 3), post) == (date(2024, 1, 3), True, None)


@pytest.mark.parametrize("parts", [d("2月30日", None, 2, 30), d("2023年13月1日", 2023, 13, 1)])
def test_impossible_dates_are_flagged_not_guessed(parts):
    post = infer_post_date([d("", 2024, 1, 1)], "", None)
    assert resolve(parts, post) == (None, False, "impossible_date")


def test_only_explicit_dates():
    post = infer_post_date([d("", 2024, 6, 3), d("", 2024, 6, 20)], "", None)
    assert (post.date, post.rule, post.year) == (date(2024, 6, 20), "explicit_only", 2024)


def test_the_issue_post_end_to_end_dates_every_quote_in_2019():
    from kirinuki.ingest.sources import Source
    from kirinuki.parse.records import source_rows

    text = ("同じ事件の続報を三つ。\n\n****港湾で大規模停電****\n港湾局は停電の原因を調べている。\n【2019年3月5日 読売】\n*****\n\n"
            "****停電、復旧の見通し立たず****\n復旧作業は夜を徹して続いた。\n【3月5日 AFP】\n*****\n\n"
            "前日にも小さな停電があったという(3月4日 時事)。\n")
    src = Source("issue18.txt", text, "0" * 64, len(text.encode()), "utf-8", "lf")
    tables = source_rows(src)
    (doc,) = tables["documents"]
    assert (doc["published_date"], doc["year_rule"]) == (date(2019, 3, 5), "nearest_explicit")
    assert [e["published_date"] for e in tables["excerpts"]] == [date(2019, 3, 5), date(2019, 3, 5)]
    assert [c["published_date"] for c in tables["citations"]] == [date(2019, 3, 4)]


def test_the_seed_keeps_2024_for_its_year_less_dates(seed_build):
    from conftest import rows

    (doc,) = rows(seed_build, "SELECT published_date, year_rule FROM documents")
    assert (doc["published_date"], doc["year_rule"]) == (date(2024, 4, 9), "nearest_explicit")
    inferred = rows(seed_build, "SELECT DISTINCT year(published_date) AS y FROM excerpts WHERE date_inferred")
    assert inferred == [{"y": 2024}]
