from datetime import date

import pytest

from kirinuki.parse.post_date import infer_post_date, resolve
from kirinuki.parse.grammar import DateParts


def d(raw: str, y, m, dd) -> DateParts:
    return DateParts(raw, y, m, dd)


def test_seed_shape_year_less_dates_before_the_explicit_ones_belong_to_the_next_year():
    parts = [d("", 2023, 10, 21), d("", 2023, 11, 10), d("", None, 4, 9), d("", None, 3, 20)]
    post = infer_post_date(parts, "", None, caption=d("", 2023, 11, 9))
    assert (post.year, post.rule, post.date, post.inferred) == (2024, "after_explicit", date(2024, 4, 9), True)


def test_year_less_dates_after_the_explicit_ones_share_their_year():
    post = infer_post_date([d("", 2024, 5, 2), d("", None, 6, 1)], "", None)
    assert (post.year, post.rule, post.date) == (2024, "same_as_explicit", date(2024, 6, 1))


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
