"""categorize: each instruction's task category, Kodama & Oda's coding / general / math / reasoning.

A category a source declares (`category:` or `category_field`) is kept as it is, unless
`trust_declared` is off. Otherwise the rule classifier decides: weighted keyword and pattern
features in English and Japanese (code fences and syntax, programming languages and terms; math
symbols, equations, arithmetic and math words; logic-puzzle and argument vocabulary; everyday
writing requests), each feature counted once per text. The category with the highest score
wins when it reaches `min_score`; otherwise the record is `general`, the category of everything
that is neither code, math nor reasoning. Ties go to coding, then math, then reasoning, the
order in which a feature is least likely to be incidental.

Nothing is dropped: the category goes to `record.category` (named by `names`) and the scores to
`meta["categorize"]`, so a later stage or a person can revisit the decision.

The classifier's accuracy on tests/data/categorize_labelled.jsonl (136 instructions, half
English, half Japanese, written for this repository) is measured by tests/test_categorize.py.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from iptkit.transforms.record import Record
from iptkit.transforms.stage import RecordStage, StageContext
from iptkit.transforms.stage_config import StageConfig

CATEGORIES = ("coding", "general", "math", "reasoning")
Category = Literal["coding", "general", "math", "reasoning"]
# Which category wins a tie: a code fence or an equation is rarely there by accident.
PRIORITY = ("coding", "math", "reasoning", "general")


@dataclass(frozen=True)
class Feature:
    """One piece of evidence: a pattern and the weight it adds to a category when present."""

    category: str
    weight: float
    pattern: re.Pattern[str]


def _words(*words: str) -> str:
    """An alternation of English words or phrases, matched as whole words, any case. Word edges
    are ASCII letters and digits only: in "Pythonで" the kana is a word character to `\\b`."""
    return r"(?i:(?<![A-Za-z0-9_])(?:" + "|".join(words) + r")(?![A-Za-z0-9_]))"


def _any(*fragments: str) -> str:
    """An alternation of Japanese fragments (no word boundaries in Japanese)."""
    return "(?:" + "|".join(fragments) + ")"


# fmt: off
_FEATURES: list[tuple[str, float, str]] = [
    # coding
    ("coding", 4.0, r"```"),
    ("coding", 3.0, r"\bdef \w+\(|\bfunction\s*\w*\s*\(|#include\s*<|\bimport \w+|console\.log|"
                    r"System\.out|\bprintf?\(|=>|\breturn\b.*[;)]|\w+\.\w+\(|\w+Error\b|"
                    r"</?[a-z]+>|\{\{|\$\{|\[[A-Za-z0-9]-[A-Za-z0-9]\]|\\[dws]"),  # tags, regexes
    ("coding", 3.0, _words("python", "javascript", "typescript", "java", r"c\+\+", "c#", "golang",
                           "rust", "ruby", "php", "kotlin", "swift", "sql", "html", "css", "bash",
                           "powershell", "vba", "react", "vue", "django", "flask", "pandas",
                           "numpy", "docker", "dockerfile", "kubernetes", "git", "jquery",
                           r"node\.js", "redis", "linux", "json", "yaml", "api", "regex")
                    + r"|C言語|シェル|正規表現"),
    ("coding", 2.0, _words("function", "method", "variable", "compile", "compiler", "bug",
                           "debug", "exception", "stack trace", "library", "framework",
                           "script", "loop", "array", "recursion", "recursive", "algorithm",
                           "implement", "refactor", "unit test", "database", "query",
                           "endpoint", "repository", "code", "programming", "program",
                           "snippet", "segmentation fault", "dataframe", "borrow checker",
                           "component", "macro", "commit", "regular expression", "http",
                           "binary search", "time complexity", "container")),
    ("coding", 2.0, _any("プログラム", "コード", "変数", "実装", "コンパイル", "バグ", "デバッグ",
                         "エラー", "配列", "メソッド", "スクリプト", "ライブラリ", "データベース",
                         "クエリ", "アルゴリズム", "ループ", "再帰", "文字列", "コマンド",
                         "フレームワーク", "マクロ", "コミット", "キャッシュ", "コンテナ",
                         "ポインタ", "二分探索", "ノード", "関数を書", "実装例", "を書いて.*関数")),
    # math
    ("math", 3.0, r"\\frac|\\sqrt|\\int|\\sum|[√∫∑∏π≤≥≠∞²³₂]|\b[a-z]\^\d|\blog_?\d"),
    # arithmetic (but not a regex range such as [0-9]), equations, percentages, units, prices
    ("math", 3.0, r"(?<![\[\w])\d+\s*[-+*/×÷^]\s*\(?\d+(?![\]\w])|\b\d*[a-z]\s*[-+]\s*\d+\s*=|"
                  r"=\s*-?\d|\d+\s*%|\d+\s*(?:cm|km|m|kg|km/h)\b|\$\d"),
    ("math", 2.5, _words("solve", "equation", "calculate", "compute", "integral", "derivative",
                         "differentiate", "probability", "prime numbers?", "factorial",
                         "percent", "perimeter", "area", "volume", "triangle", "circle",
                         "radius", "hypotenuse", "mean", "median", "sum of", "theorem",
                         "prove", "proof", "matrix", "determinant", "eigenvalues?", "vector",
                         "logarithm", "polynomial", "quadratic", "fraction", "divisible",
                         "remainder", "square root", "irrational", "compound interest",
                         "least common multiple", "greatest common divisor", "simplify",
                         "interior angles", "hexagon", "how many ways", "average speed")),
    ("math", 2.5, _any("計算", "求め", "方程式", "解いて", "解け", "証明", "確率", "積分", "微分",
                       "面積", "体積", "三角形", "円の", "半径", "直径", "平均", "割合", "素数",
                       "約数", "倍数", "余り", "数列", "行列", "ベクトル", "対数", "二次",
                       "平方根", "分数", "最小値", "最大値", "固有値", "無理数", "公約数",
                       "公倍数", "合計", "何個", "何円", "何km", "何cm", "何点", "時速", r"第\d+項",
                       "いくらになり", "いくつあり", "引き")),
    # reasoning
    ("reasoning", 3.0, _words("riddle", "puzzle", "brain teaser", "logic", "logical",
                              "logically", "deduce", "deduction", "infer", "conclude",
                              "conclusion", "premise", "fallacy", "syllogism", "valid",
                              "assumption", "knights?", "knaves?", "liars?", "lying",
                              "tells? the truth", "always lies", "odd one out",
                              "what comes next", "next in the sequence", "must be true",
                              "does it follow", "argument", "paradox", "contradiction",
                              "suspects?", "guilty", "innocent")),
    ("reasoning", 2.5, _words("taller than", "shorter than", "older than", "younger than",
                              "faster than", "who is the", "which statement", "sits? next to",
                              "in a row", "at either end", "far left", "far right",
                              "you may", "you can only", "only once", "how can you",
                              r"how do you (?:find|determine|tell|know)", "what day")),
    ("reasoning", 3.0, _any("論理", "推論", "推理", "なぞなぞ", "パズル", "前提", "結論", "矛盾",
                            "嘘つき", "正直者", "嘘を", "本当のこと", "仲間外れ", "次に来る",
                            "妥当", "誰ですか", "犯人", "導け", "何が言え", "必ず正しい",
                            "選び直す", "何曜日", "隣", "向かい", "並んで", "年上", "年下",
                            "背が高い", "なーんだ", "あり得")),
    # general: everyday writing and advice, so that "write an email" is not left to chance
    ("general", 1.5, _words("email", "letter", "poem", "haiku", "story", "essay", "toast",
                            "speech", "recipe", "tips", "recommend", "suggest", r"summari[sz]e",
                            "translate", "pack", "cover letter", "pros and cons", "describe",
                            "politely", "capital of", "history")),
    ("general", 1.5, _any("メール", "手紙", "詩", "物語", "要約", "あらすじ", "翻訳", "レシピ",
                          "おすすめ", "コツ", "観光", "旅行", "スピーチ", "紹介", "提案",
                          "メリット", "注意点", "方法はありますか", "アイデア", "について説明")),
]
# fmt: on
FEATURES = tuple(Feature(c, w, re.compile(p)) for c, w, p in _FEATURES)


class CategorizeConfig(StageConfig):
    """Options of the categorize stage."""

    method: Literal["rules"] = Field(
        "rules",
        description="rules: keyword and pattern features in English and Japanese (an LLM "
        "classifier through the inference layer will be a second method)",
    )
    names: dict[Category, str] = Field(
        default_factory=dict,
        description="the name written for each category, e.g. {coding: code}; unnamed ones "
        "keep coding, general, math, reasoning",
    )
    trust_declared: bool = Field(
        True, description="keep a category the source declared; off: classify every record"
    )
    use_response: bool = Field(
        True,
        description="also read the first pair's response (code in an answer marks a coding task)",
    )
    min_score: float = Field(
        2.0,
        ge=0.0,
        description="lowest winning score for coding, math or reasoning; below it: general",
    )
    max_chars: int = Field(
        20_000,
        ge=100,
        description="the rules read the first max_chars characters (bounds cost on long texts)",
    )


def scores(text: str) -> dict[str, float]:
    """Each category's score: the sum of the weights of the features present in the text."""
    out = dict.fromkeys(CATEGORIES, 0.0)
    for feature in FEATURES:
        if feature.pattern.search(text):
            out[feature.category] += feature.weight
    return out


def classify(text: str, min_score: float = 2.0) -> tuple[str, dict[str, float]]:
    """The category the rules give a text, and the scores behind it."""
    found = scores(text)
    best = max(PRIORITY, key=lambda c: (found[c], -PRIORITY.index(c)))
    if best != "general" and found[best] < min_score:
        best = "general"
    return best, found


def classify_record(record: Record, cfg: CategorizeConfig) -> Record:
    """The record with its category (declared, or by the rules) and the evidence in meta."""
    if cfg.trust_declared and record.category:
        meta = {**record.meta, "categorize": {"by": "declared"}}
        return dataclasses.replace(record, meta=meta)
    text = record.text
    if cfg.use_response and record.pairs:
        text = f"{text}\n{record.pairs[0].get('response', '')}"
    category, found = classify(text[: cfg.max_chars], cfg.min_score)
    evidence = {"by": cfg.method, "scores": {c: s for c, s in found.items() if s}}
    return dataclasses.replace(
        record,
        category=cfg.names.get(category, category),  # type: ignore[call-overload]
        meta={**record.meta, "categorize": evidence},
    )


class Categorize(
    RecordStage,
    stage="categorize",
    config=CategorizeConfig,
    summary="coding / general / math / reasoning: declared, or EN+JA rule classifier",
):
    """Sets each record's task category; never drops a record."""

    def __init__(self, config: CategorizeConfig | None = None, context: StageContext | None = None):
        super().__init__(config, context)

    def apply(self, record: Record) -> Record:
        return classify_record(record, self.config)
