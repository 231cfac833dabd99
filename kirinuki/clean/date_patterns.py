"""The date vocabulary as one regular expression, and the numerals it reads.

In: nothing (module constants). Out: MENTION_RE, whose named alternatives are tried in order at
each position (a longer form always comes before the forms it contains: 一昨年 before 昨年, 先々週
before 先週, 2023年度 before 2023年), `groups_of(match)` (the alternative's name and its groups
without their numeric suffix), `number()` for Arabic, full-width and kanji numerals, and KINDS, the
`kind` values a mention can take. The resolver is kirinuki/clean/date_mentions.py; the examples
are in input/reference/date_rules.tsv.
"""

from __future__ import annotations

import re

_DIG = str.maketrans("０１２３４５６７８９", "0123456789")
_KANJI = {c: i for i, c in enumerate("〇一二三四五六七八九")}
_N = "[0-9０-９]"
_N2 = _N + "{1,2}"
_K = "[一二三四五六七八九]"
_NOT_AFTER_NUMBER = "(?<![0-9０-９.〇一二三四五六七八九十百千万数何第毎])"
# A month or a day after a month: 1–2 digits or a kanji numeral (三, 十二, 二十五).
_MD = rf"(?:{_N}{{1,2}}|[一二三四五六七八九十]{{1,3}})"
# A day on its own: digits, or a kanji numeral of two or more characters (十九, 二十, 三十一).
# 一日…十日 alone are left out: 一日も早く, 三日坊主, 十日町 read them otherwise.
_LONE_DAY = rf"(?:{_N}{{1,2}}|[二三]十{_K}?|十{_K})"
_WEEKDAYS = "月火水木金土日"
_PART = r"上旬|中旬|下旬|初旬|初め|末"
_SEASON = r"(?P<season{i}>春|夏|秋|冬)(?![田葉分至])"
_FRACTION = (r"(?P<half{i}>上半期|下半期|上期|下期)|第(?P<q{i}>[1-4１-４一二三四])四半期"
             r"|(?P<m1_{i}>{n})[～〜~－-](?P<m2_{i}>{n})月期")
_FISCAL_PART = r"(?P<fpart{i}>上半期|下半期|上期|下期|末|内)|第(?P<fq{i}>[1-4１-４一二三四])四半期"
_REL_YEARS = "一昨年|再来年|昨年|去年|今年|本年|来年|前年|翌年|同年"


def _tod(i: int) -> str:
    """A weekday in brackets and a time of day, both optional: 15日(月)夜."""
    return (rf"(?:\s*[(（](?P<wdp{i}>[{_WEEKDAYS}])[)）])?"
            r"(?:未明|早朝|朝|午前|正午|昼|午後|夕方|夕|夜|深夜)?")


def _year(i: int) -> str:
    return (rf"(?:(?P<y{i}>{_N}{{4}}|[〇{_K[1:-1]}]{{4}})|(?P<era{i}>令和|平成|昭和)"
            rf"(?P<ey{i}>元|{_N}{{1,2}}|[一二三四五六七八九十]{{1,3}}))年")


def _after_year(i: int, *, lone: str) -> str:
    """What may follow a year (explicit or relative): a fiscal year, a season, a half or a
    quarter, 末/初め/内, or a month with a day or a part of the month. `lone` is the look-ahead
    that a year standing alone must pass (年間 and 年代 are no dates)."""
    month = rf"(?P<m{i}>{_MD})月(?:\s*(?P<d{i}>{_MD})日{_tod(i)}|(?P<part{i}>{_PART}))?"
    return (rf"(?:(?P<fy{i}>度)(?!比)(?:{_FISCAL_PART.format(i=i)})?"
            rf"|\s*{month}"
            rf"|の?{_SEASON.format(i=i)}"
            rf"|の?(?:{_FRACTION.format(i=i, n=_N2)}|(?P<fhalf{i}>前半|後半))"
            rf"|(?P<ypart{i}>末|初め|内)"
            rf"|{lone})")


# (name, pattern maker) in priority order: at one position the first alternative that matches
# wins, so a longer form comes before its prefixes. Group names carry the alternative's number.
_ALTERNATIVES = [
    ("year", lambda i: rf"{_year(i)}{_after_year(i, lone='(?!間|代|度比)')}"),
    ("relative_year", lambda i: rf"(?P<pre{i}>この|その)?(?P<rel{i}>{_REL_YEARS}){_after_year(i, lone='')}"),
    ("season", lambda i: rf"(?:(?P<srel{i}>昨|今|来)|(?P<pre{i}>この|その)の?){_SEASON.format(i=i)}"),
    ("relative_month", lambda i: rf"(?P<pre{i}>この|その)?(?P<rel{i}>先月|今月|来月|前月|翌月|同月)"
                                 rf"(?:(?P<d{i}>{_MD})日{_tod(i)}|(?P<part{i}>{_PART}))?"),
    ("week", lambda i: rf"(?P<pre{i}>この|その)?(?:(?P<rel{i}>先々週|先週|今週|来週|再来週|前週|翌週|同週)"
                       rf"(?:(?P<wend{i}>末)|の?(?P<wd{i}>[{_WEEKDAYS}])曜日?)?"
                       rf"|(?<!毎)(?P<lone{i}>週末)|(?<![毎週])(?P<lwd{i}>[{_WEEKDAYS}])曜日?)"),
    ("counted", lambda i: rf"(?P<pre{i}>この|その)?{_NOT_AFTER_NUMBER}(?P<n{i}>{_N}{{1,3}}|[一二三四五六七八九十]{{1,3}}|十数|数|半)"
                          rf"(?P<unit{i}>日|週間|週|カ月|ヵ月|ヶ月|か月|ケ月|箇月|年)(?P<dir{i}>前|後)(?!後|半)"),
    ("fraction", lambda i: rf"{_NOT_AFTER_NUMBER}(?:{_FRACTION.format(i=i, n=_N2)})"),
    ("month_day", lambda i: rf"{_NOT_AFTER_NUMBER}(?<!毎年)(?P<m{i}>{_MD})月\s*(?P<d{i}>{_MD})日{_tod(i)}"),
    ("month", lambda i: rf"{_NOT_AFTER_NUMBER}(?<!毎年)(?P<m{i}>{_MD})月(?P<part{i}>{_PART})?(?!間|分|期|雨|蝿)"),
    ("relative_day", lambda i: rf"(?P<pre{i}>この|その)?(?P<rel{i}>同日|翌々日|翌日|前々日|前日|当日"
                               rf"|一昨日|昨日|本日|今日|明後日|明日|昨夜|昨晩|今朝|今夜|今晩|今夕)(?!香)"),
    ("day", lambda i: rf"{_NOT_AFTER_NUMBER}(?<!月)(?P<d{i}>{_LONE_DAY})日"
                      rf"(?!間|以上|以内|ぶり|分|連続|後|前|目|付|本|酔|中|月|おき|ごと|毎)(?:{_tod(i)})"),
    ("year_part", lambda i: rf"(?<![0-9０-９〇一二三四五六七八九昨去今本来前翌同])年"
                            rf"(?:度(?P<fpart{i}>末|内)|(?P<ypart{i}>末|初め|内))"),
]
# The guard lets the regex engine skip every position where no alternative can start (most of
# the text): one character test, then the two characters an expression can open with (今 only
# before 年月週日朝夜晩夕 or a season, 前 only before 日年月週々 …), before the twelve alternatives
# are tried. It measured 2.4x faster than a one-character guard on the seed and the sample, which
# was ~4x faster than none; tests/test_date_vocabulary.py checks that it never hides a match.
_KN = "〇一二三四五六七八九十"
_GUARD = (f"(?=[0-9０-９{_KN}昨去今本来前翌同先当年令平昭数半明再上下第こそ週{_WEEKDAYS}])"
          rf"(?=[0-9０-９]|[{_KN}][{_KN}]{{0,3}}[年月日週カヵヶかケ箇]|一昨"
          r"|今[年月週日朝夜晩夕春夏秋冬]|昨[年日夜晩春夏秋冬]|来[年月週春夏秋冬]|去年|本[日年]|明[日後]"
          r"|先[月週々]|当日|前[日年月週々]|翌[日年月週々]|同[日年月週]|再来|令和|平成|昭和"
          r"|数[日週カヵヶかケ箇年]|半[年日週]|十数|[上下]半?期|第[1-4１-４一二三四]四|年[末初内度]"
          rf"|[こそ]の|[{_WEEKDAYS}]曜|週末)")
PATTERN = "(?:" + "|".join(f"(?P<{k}>{make(i)})" for i, (k, make) in enumerate(_ALTERNATIVES)) + ")"
MENTION_RE = re.compile(_GUARD + PATTERN)
_ALTERNATIVE_NAMES = frozenset(k for k, _ in _ALTERNATIVES)
PREFILTER = re.compile(f"[年月日週曜春夏秋冬期朝夜晩夕{_WEEKDAYS}]")
_SUFFIX = re.compile(r"_?[0-9]+$")

# Every kind a mention can have: the alternatives, and the ones a year alternative becomes when
# a fiscal year, a season or a part of the year follows it.
KINDS = ("full_date", "year_month", "year", "relative_year", "fiscal_year", "season", "fraction",
         "relative_month", "week", "weekday", "counted", "month_day", "month", "relative_day", "day",
         "year_part")


def _groups_by_alternative() -> dict[str, tuple[tuple[int, str], ...]]:
    """{alternative: ((group index, group name without its number), …)}: the groups inside it."""
    out: dict[str, list[tuple[int, str]]] = {k: [] for k, _ in _ALTERNATIVES}
    for name, index in MENTION_RE.groupindex.items():
        if name not in _ALTERNATIVE_NAMES:
            suffix = _SUFFIX.search(name)
            out[_ALTERNATIVES[int(suffix.group().lstrip("_"))][0]].append((index, name[:suffix.start()]))
    return {k: tuple(v) for k, v in out.items()}


_GROUPS = _groups_by_alternative()


def groups_of(m: re.Match) -> tuple[str, dict[str, str]]:
    """(alternative name, {group name without its number: text}) for the groups that matched;
    only the matched alternative's groups are looked at (a groupdict of all ~150 cost more than
    the resolution)."""
    alt = m.lastgroup
    return alt, {base: v for index, base in _GROUPS[alt] if (v := m.group(index)) is not None}


def number(s: str) -> int | None:
    """19, １９, 十九, 二〇二三 → int; None when the characters make no number (九九十)."""
    s = s.translate(_DIG)
    if s.isascii() and s.isdigit():
        return int(s)
    if "十" in s:
        head, _, tail = s.partition("十")
        if len(head) > 1 or len(tail) > 1 or "十" in tail or "〇" in head + tail:
            return None
        return (_KANJI[head] if head else 1) * 10 + (_KANJI[tail] if tail else 0)
    if all(c in _KANJI for c in s):
        return int("".join(str(_KANJI[c]) for c in s))
    return None
