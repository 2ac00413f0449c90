"""categorize: each instruction's task category, Kodama & Oda's coding / general / math / reasoning.

A category a source declares (`category:` or `category_field`) is kept as it is, unless
`trust_declared` is off. Otherwise `method` decides:

- `rules` (default): weighted keyword and pattern features in English, Japanese and Polish
  (code fences and syntax, programming languages and terms; math symbols, equations,
  arithmetic and math words; logic-puzzle and argument vocabulary; everyday writing requests;
  Polish by stems, since Polish inflects), each feature counted once per text. The category
  with the highest score wins when it reaches `min_score`; otherwise the record is `general`,
  the category of everything that is neither code, math nor reasoning. Ties go to coding, then
  math, then reasoning, the order in which a feature is least likely to be incidental.
- `classifier`: the linear model (`transforms/text/linear_classifier.py`) that
  `iptkit categorize train LABELLED.jsonl --out MODEL` trained on labelled local data; `model`
  names its file. The most probable label wins.
- `llm`: a model through the inference layer (a `ModelStage`: `request` asks with the category
  list, `parse` reads the label). An answer naming no category, or two, falls back to the rules
  (`unparsed: rules`, with `fallback: unparsed_category` in the evidence) or is a reject with
  reason `unparsed_category`; a failed generation is a reject with its reason.

Rules and classifier drop nothing: the category goes to `record.category` (named by `names`)
and the evidence (scores, probabilities, the model's answer) to `meta["categorize"]`, so a later
stage or a person can revisit the decision.

Accuracy on tests/data/categorize_labelled.jsonl (196 instructions in English, Japanese and
Polish) and on the held-out tests/data/categorize_heldout.jsonl (100) is measured by
tests/test_categorize.py and benchmarks/bench_categorize.py.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from iptkit.transforms.inference.chat_prompt import chat_request
from iptkit.transforms.inference.core import (
    Generation,
    GenerationRequest,
    InferenceOptions,
    sampling_seed,
)
from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop, ModelStage, RecordStage, StageContext
from iptkit.transforms.text.linear_classifier import LinearClassifier

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


def _stems(*stems: str) -> str:
    """An alternation of Polish stems, each starting a word and taking any ending, any case:
    Polish inflects (kod, kodu, kodzie), so a stem stands for all of its forms."""
    return r"(?i:(?<!\w)(?:" + "|".join(stems) + r")\w*)"


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
    ("coding", 3.0, _stems("pythoni", "javascrip", "jav[iy]", "gici", "dockerz", "kotlin",
                           "reac", "bash", "pandas", "sql", "html", "css", "php", "node", "git(?!ar)")),
    ("coding", 2.0, _stems("program", "kod", "zmienn", "kompil", "debug", "bibliotek", "skrypt",
                           "pętl", "rekurencj", "algorytm", "zaimplement", "implement",
                           "baz[aoyi]e? danych", "bazie danych", "repozytor", "gałę", "gałąź",
                           "komend", "serwer", "test jednostkow", "wyjąt",
                           "wyrażeni[ea] regularn", "kontener", "framework", "klas[aęy] ",
                           "zapytani[ea] sql", "commit", "scalan", "wdroż", "błąd kompil")),
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
    ("math", 2.5, _stems("oblicz", "rozwiąż", "równani", "pole ", "pola ", "obwód", "obwodu",
                         "procent", "pierwiast", "całk", "pochodn", "prawdopodobie", "trójkąt",
                         "przeciwprostokątn", "przyprostokątn", "kąt", "koł[ao] o", "promie",
                         "średnic", "objętoś", "wyznacz", "macierz", "liczb[ay]? pierwsz",
                         "wielokrotnoś", "dzielnik", "ułam", "sześcian", "sześciokąt",
                         "prostokąt", "ile wynosi", "ile to jest", "udowodnij", "twierdzeni",
                         "miejsc[ae] zerow", "funkcj[aię] kwadratow", "na ile sposobów", "silni",
                         "średni[aąej]+ arytmetyczn", "średni[aąej]+ prędkoś", "lokat",
                         "kapitalizacj", "odsetk", "suma kątów", "ile litrów", "ile kosztuj")),
    ("math", 3.0, r"\d+\s*(?:zł|dm|mm|l)(?!\w)"),
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
    ("reasoning", 3.0, _stems("zagadk", "łamigłówk", "logiczn", "wniosk", "wniosek",
                              "przesłank", "sprzeczn", "kłam", "rycerz", "łotr", "podejrzan",
                              "winn[yae]", "nie pasuje", "następny (?:wyraz|element)", "wynika",
                              "rozumowani", "argument", "założeni", "paradoks", "mówi prawdę",
                              "mówią prawdę", "czy można wnioskować")),
    ("reasoning", 2.5, _stems("wyższ[yaą] od", "niższ[yaą] od", "starsz[yaą] od",
                              "młodsz[yaą] od", "szybsz[yaą] od", "wolniejsz", "obok",
                              "po (?:lewej|prawej) stronie", "na skraju", "w rzędzie",
                              "dzień tygodnia", "pojutrze", "przedwczoraj", "kto jest",
                              "mieć pewność", "jak odmierzyć")),
    # general: everyday writing and advice, so that "write an email" is not left to chance
    ("general", 1.5, _words("email", "letter", "poem", "haiku", "story", "essay", "toast",
                            "speech", "recipe", "tips", "recommend", "suggest", r"summari[sz]e",
                            "translate", "pack", "cover letter", "pros and cons", "describe",
                            "politely", "capital of", "history")),
    ("general", 1.5, _any("メール", "手紙", "詩", "物語", "要約", "あらすじ", "翻訳", "レシピ",
                          "おすすめ", "コツ", "観光", "旅行", "スピーチ", "紹介", "提案",
                          "メリット", "注意点", "方法はありますか", "アイデア", "について説明")),
    ("general", 1.5, _stems("mail", "list ", "list motywacyjn", "wiersz o", "opowiadani",
                            "przepis", "życzeni", "toast", "przemówieni", "streść", "przetłumacz",
                            "polec", "zaproponuj", "doradź", "porad", "opisz", "zalety",
                            "wycieczk", "zwiedzani", "atrakcj", "histori", "uprzejm", "pomysł",
                            "prezent")),
]
# fmt: on
FEATURES = tuple(Feature(c, w, re.compile(p)) for c, w, p in _FEATURES)


DEFAULT_PROMPT = """\
Classify the request below into exactly one task category:
- coding: writing, explaining, fixing or running code, programming languages, software tools
- math: calculation, equations, geometry, probability, proofs, word problems with numbers
- reasoning: logic puzzles, riddles, deduction, judging whether an argument holds
- general: everything else (writing, advice, knowledge, translation, conversation)
The request may be in any language. Answer with the category name only.

Request:
{text}"""


class CategorizeConfig(InferenceOptions):
    """Options of the categorize stage (the model keys are used by method llm only)."""

    method: Literal["rules", "classifier", "llm"] = Field(
        "rules",
        description="rules: keyword and pattern features in English, Japanese and Polish; "
        "classifier: a linear model trained by `iptkit categorize train` (model: its .npz); "
        "llm: a model asked through the inference layer (model, backend, ...: as every model "
        "stage)",
    )
    backend: Literal["none", "transformers", "vllm", "openai"] = Field(  # type: ignore[assignment]
        "none",
        description="method llm: transformers, vllm or openai (base_url alone sets openai); "
        "none for rules and classifier",
    )
    model: str | None = Field(
        None,
        description="method classifier: the model file `iptkit categorize train` wrote; method "
        "llm: the model folder, hub id or served name (paths relative to the spec's folder)",
    )
    max_new_tokens: int = Field(16, ge=1, description="method llm: most tokens of the answer")
    prompt_too_long: Literal["truncate", "reject"] = Field(
        "reject",
        description="method llm: a prompt over max_model_len - max_new_tokens tokens: reject "
        "(the default here: truncating cuts the category list at the prompt's start) or "
        "truncate; lower max_chars to fit long texts",
    )
    prompt: str = Field(
        DEFAULT_PROMPT,
        description="method llm: the user turn, a template with {text} (the record's text and "
        "first response, cut to max_chars)",
    )
    system: str | None = Field(None, description="method llm: a system turn, if any")
    unparsed: Literal["rules", "reject"] = Field(
        "rules",
        description="method llm: an answer naming no category (or two) falls back to the rules "
        "(meta.categorize says why) or is a reject with reason unparsed_category",
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
        description="rules: lowest winning score for coding, math or reasoning; below it: general",
    )
    max_chars: int = Field(
        20_000,
        ge=100,
        description="every method reads the first max_chars characters (bounds cost on long texts)",
    )

    @model_validator(mode="before")
    @classmethod
    def _llm_backend(cls, data: Any) -> Any:
        # method llm without a backend runs transformers (or openai, with base_url: the base
        # class's rule); the other methods run no generation model.
        if isinstance(data, dict) and data.get("method") == "llm" and "backend" not in data:
            return {**data, "backend": "openai" if data.get("base_url") else "transformers"}
        return data

    @model_validator(mode="after")
    def _model_needed(self) -> CategorizeConfig:
        if self.method == "llm":
            if self.backend == "none":
                raise ValueError("method llm needs a backend: transformers, vllm or openai")
            return super()._model_needed()
        if self.backend != "none":
            raise ValueError(f"backend {self.backend} is for method llm (method is {self.method})")
        if self.method == "rules" and self.model is not None:
            raise ValueError("method rules takes no model; drop model or set method classifier")
        if self.method == "classifier":
            if self.model is None:
                raise ValueError(
                    "method classifier needs model: the file `iptkit categorize train` wrote"
                )
            load_classifier(self.model)
        return self


@functools.lru_cache(maxsize=4)
def load_classifier(path: str) -> LinearClassifier:
    """The classifier in `path`, checked: its labels must be categories (ValueError if not)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the classifier {path}: {exc.strerror}") from exc
    model = LinearClassifier.from_bytes(data)
    unknown = sorted(set(model.labels) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"the classifier {path} has labels that are no category: {unknown}")
    return model


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


def category_text(record: Record, cfg: CategorizeConfig) -> str:
    """What every method reads: the text, with the first response when `use_response`."""
    text = record.text
    if cfg.use_response and record.pairs:
        text = f"{text}\n{record.pairs[0].get('response', '')}"
    return text[: cfg.max_chars]


def declared(record: Record, cfg: CategorizeConfig) -> bool:
    """A category the source declared, and the config trusts it."""
    return cfg.trust_declared and bool(record.category)


def categorized(record: Record, category: str, evidence: dict[str, Any], cfg: CategorizeConfig):
    """The record with its category (under its configured name) and the evidence in meta."""
    return dataclasses.replace(
        record,
        category=cfg.names.get(category, category),  # type: ignore[call-overload]
        meta={**record.meta, "categorize": evidence},
    )


def by_rules(record: Record, cfg: CategorizeConfig, **why: Any) -> Record:
    """The rules' category; `why` adds to the evidence (an LLM answer the rules replaced)."""
    category, found = classify(category_text(record, cfg), cfg.min_score)
    evidence = {"by": "rules", "scores": {c: s for c, s in found.items() if s}, **why}
    return categorized(record, category, evidence, cfg)


def by_classifier(record: Record, cfg: CategorizeConfig, model: LinearClassifier) -> Record:
    """The trained classifier's category, with every label's probability."""
    (probs,) = model.probabilities([category_text(record, cfg)])
    best = max(range(len(probs)), key=lambda i: (probs[i], -i))
    scores_ = {label: round(float(p), 4) for label, p in zip(model.labels, probs, strict=True)}
    return categorized(record, model.labels[best], {"by": "classifier", "scores": scores_}, cfg)


def classify_record(record: Record, cfg: CategorizeConfig) -> Record:
    """The record with its category (declared, by the rules or by the trained classifier)."""
    if declared(record, cfg):
        return dataclasses.replace(record, meta={**record.meta, "categorize": {"by": "declared"}})
    if cfg.method == "classifier":
        return by_classifier(record, cfg, load_classifier(cfg.model or ""))
    return by_rules(record, cfg)


_LABEL = re.compile(r"(?<![a-z])(coding|general|math|reasoning)(?![a-z])")
UNPARSED = "unparsed_category"


def parse_label(output: str) -> str | None:
    """The one category an LLM's answer names (any case, markdown or a sentence around it), or
    None when it names none or more than one."""
    found = set(_LABEL.findall(unicodedata.normalize("NFKC", output).lower()))
    return found.pop() if len(found) == 1 else None


def from_answer(record: Record, generation: Generation, cfg: CategorizeConfig) -> Record | Drop:
    """The record categorized by the model's answer; a failed generation is dropped with its
    reason, an answer naming no single category falls back or is dropped (`unparsed`)."""
    if generation.error:
        return Drop(generation.error, generation.detail)
    label = parse_label(generation.text)
    if label is not None:
        evidence = {"by": "llm", "model": cfg.model, "answer": generation.text.strip()[:200]}
        return categorized(record, label, evidence, cfg)
    detail = f"the model's answer names no single category: {generation.text.strip()[:200]!r}"
    if cfg.unparsed == "reject":
        return Drop(UNPARSED, detail)
    return by_rules(record, cfg, fallback=UNPARSED, answer=generation.text.strip()[:200])


class Categorize(
    RecordStage,
    ModelStage,
    stage="categorize",
    config=CategorizeConfig,
    summary="coding / general / math / reasoning: declared, or EN+JA+PL rules, a trained "
    "linear classifier or an LLM",
):
    """Sets each record's task category. Rules and classifier never drop a record; the LLM
    drops only a failed generation (and an unparsed answer with `unparsed: reject`)."""

    def __init__(self, config: CategorizeConfig | None = None, context: StageContext | None = None):
        super().__init__(config, context)

    def apply(self, record: Record) -> Record:
        return classify_record(record, self.config)

    def wants(self, record: Record) -> bool:
        return not declared(record, self.config)

    def request(self, record: Record, tokenizer: Any) -> GenerationRequest:
        user = self.config.prompt.replace("{text}", category_text(record, self.config))
        return chat_request(
            tokenizer, user, sampling_seed(self.seed, record.id), self.config.system
        )

    def parse(self, record: Record, generation: Generation) -> Record | Drop:
        return from_answer(record, generation, self.config)

    def run(self, records: Any) -> dict[str, Any]:
        if self.config.method == "llm":
            return ModelStage.run(self, records)
        return RecordStage.run(self, records)
