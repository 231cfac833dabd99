"""Synth: a generated corpus in the clipping grammar with known ground truth.

Fictional text (pseudo-words drawn from kana and a fixed sample of kanji) arranged as posts of
commentary and excerpts. Each excerpt quotes an article from a growing pool, either for the first
time (`original`) or again with one edit: verbatim, elided paragraphs, character substitutions,
truncation or re-flowed lines. Some articles end with a shared boilerplate paragraph, a trap for
dedup precision. Everything is deterministic in the seed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np

EDITS = ("verbatim", "elided", "substituted", "truncated", "reflowed")
_KATAKANA = [chr(c) for c in range(0x30A1, 0x30F4)]
_PARTICLES = ["は", "が", "を", "に", "で", "と", "の", "も", "へ", "から"]
_OUTLETS = ["共同通信", "時事通信", "AFP", "ロイター", "NHK", "朝日新聞", "毎日新聞", "読売新聞", "日経",
            "産経", "テレ朝news", "Newsweek", "BBC", "CNN", "ブルームバーグ", "東京新聞", "現代ビジネス"]


@dataclass
class Article:
    article_id: str
    outlet: str
    published: date
    headline: str
    paragraphs: list[str]


@dataclass
class SynthExcerpt:
    article_id: str
    edit: str
    headline: str
    lines: list[str]
    outlet: str
    published: date


@dataclass
class Generator:
    seed: int = 0
    requote_rate: float = 0.35
    boilerplate_rate: float = 0.3
    step_hours: int = 24  # the calendar moves on by 0 or this many hours before each new article
    rng: np.random.Generator = field(init=False)

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)
        kanji = self.rng.choice(np.arange(0x4E00, 0x9FA0), size=1500, replace=False)
        self._kanji = [chr(int(c)) for c in kanji]
        self._words = [self._word() for _ in range(6000)]
        w = 1.0 / np.arange(1, len(self._words) + 1)  # Zipf-like word frequencies
        self._word_cdf = np.cumsum(w / w.sum())
        self.boilerplate = [self._sentence(12) + self._sentence(10) for _ in range(20)]
        self.articles: list[Article] = []
        self._day = date(2023, 1, 1)
        self._hours = 0  # since self._day, by steps of step_hours

    def _word(self) -> str:
        if self.rng.random() < 0.6:
            return "".join(self.rng.choice(self._kanji, size=int(self.rng.integers(2, 4))))
        return "".join(self.rng.choice(_KATAKANA, size=int(self.rng.integers(3, 6))))

    def _sentence(self, n_words: int) -> str:
        words = np.searchsorted(self._word_cdf, self.rng.random(n_words)).tolist()
        parts = self.rng.integers(len(_PARTICLES), size=n_words).tolist()
        out = "".join(self._words[w] + _PARTICLES[p] for w, p in zip(words, parts))
        return out[: -len(_PARTICLES[parts[-1]])] + ("した。" if self.rng.random() < 0.5 else "だ。")

    def _paragraph(self) -> str:
        return "".join(self._sentence(int(self.rng.integers(6, 16))) for _ in range(int(self.rng.integers(1, 4))))

    def new_article(self) -> Article:
        self._hours += int(self.rng.integers(0, 2)) * self.step_hours
        self._day += timedelta(days=self._hours // 24)
        self._hours %= 24
        if self._day.year >= 2100:  # a large corpus cycles its dates rather than leave the plausible window
            self._day = date(2023, 1, 1)
        n = 2 + int(self.rng.geometric(0.09))
        paras = [self._paragraph() for _ in range(min(n, 40))]
        if self.rng.random() < self.boilerplate_rate:
            paras.append(self.boilerplate[int(self.rng.integers(len(self.boilerplate)))])
        a = Article(f"a{len(self.articles):07d}", _OUTLETS[int(self.rng.integers(len(_OUTLETS)))],
                    self._day, self._sentence(4)[:-1], paras)
        self.articles.append(a)
        return a

    def excerpt(self, new: bool = False) -> SynthExcerpt:
        """A quote of a new article, or (at requote_rate, unless `new`) of an earlier one, edited."""
        if not new and self.articles and self.rng.random() < self.requote_rate:
            a = self.articles[int(self.rng.integers(len(self.articles)))]
            edit = EDITS[int(self.rng.integers(len(EDITS)))]
        else:
            a, edit = self.new_article(), "original"
        return SynthExcerpt(a.article_id, edit, a.headline, self._edit(a.paragraphs, edit), a.outlet, a.published)

    def _edit(self, paras: list[str], edit: str) -> list[str]:
        if edit in ("original", "verbatim") or len(paras) < 2 and edit in ("elided", "truncated"):
            return list(paras)
        if edit == "elided":  # drop up to a fifth of the paragraphs, mark each gap
            k = max(1, len(paras) // 5)
            drop = set(self.rng.choice(np.arange(1, len(paras)), size=min(k, len(paras) - 1), replace=False).tolist())
            out = []
            for i, p in enumerate(paras):
                if i in drop:
                    if not out or out[-1] != "(中略)":
                        out.append("(中略)")
                else:
                    out.append(p)
            return out
        if edit == "truncated":  # keep the first 85-95% of the text
            keep = int(sum(map(len, paras)) * self.rng.uniform(0.85, 0.95))
            out, n = [], 0
            for p in paras:
                if n + len(p) > keep:
                    out.append(p[: max(1, keep - n)])
                    break
                out.append(p)
                n += len(p)
            return out
        if edit == "substituted":  # change about 1% of the characters
            out = []
            for p in paras:
                chars = list(p)
                for i in np.flatnonzero(self.rng.random(len(chars)) < 0.01):
                    chars[i] = self._kanji[int(self.rng.integers(len(self._kanji)))]
                out.append("".join(chars))
            return out
        # reflowed: the same text, broken into lines at other places
        text = "".join(paras)
        cuts = sorted(set(self.rng.integers(1, len(text), size=max(1, len(paras))).tolist()))
        return [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)]) if text[a:b]]


def excerpts(n: int, seed: int = 0, **kw) -> list[SynthExcerpt]:
    g = Generator(seed, **kw)
    return [g.excerpt() for _ in range(n)]


def write_corpus(out: Path, posts: int, seed: int = 0, excerpts_per_post: int = 7, in_order: bool = False) -> dict:
    """Write `posts` post files plus ground_truth.csv; return counts. `in_order`: dated as a blog's
    posts are, each after the one before: every post quotes a new article first (so a post is
    never dated by the old articles it quotes again) and the calendar moves on by 0 or 2 hours per
    new article, not 0 or a day, so 100,000 posts span about 50 years rather than cycle through
    2023-2099 again and again."""
    out.mkdir(parents=True, exist_ok=True)
    g = Generator(seed, step_hours=2 if in_order else 24)
    truth = []
    n_bytes = 0
    for i in range(posts):
        lines = [f"【生成データ {i + 1}:{g._sentence(3)[:-1]}】", "この投稿は kirinuki synth が生成した架空のテキストです。"]
        k = max(1, int(g.rng.poisson(excerpts_per_post - 1)) + 1)
        for j in range(k):
            lines.append(g._paragraph())
            ex = g.excerpt(new=in_order and j == 0)
            body = list(ex.lines)
            d = ex.published
            body[-1] += f"【{d.year}年{d.month}月{d.day}日 {ex.outlet}】"
            lines += [f"****{ex.headline}****", *body, "*" * 18]
            truth.append({"source_path": f"post_{i + 1:06d}.txt", "ordinal": j + 1,
                          "article_id": ex.article_id, "edit": ex.edit})
        data = ("\n".join(lines) + "\n").encode("utf-8")
        (out / f"post_{i + 1:06d}.txt").write_bytes(data)
        n_bytes += len(data)
    with (out / "ground_truth.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["source_path", "ordinal", "article_id", "edit"])
        w.writeheader()
        w.writerows(truth)
    return {"posts": posts, "excerpts": len(truth), "bytes": n_bytes, "articles": len(g.articles)}
