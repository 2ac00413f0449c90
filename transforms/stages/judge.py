"""judge: an LLM scores each instruction-response pair 1-10, then the best are selected.

LLM-as-judge in the MT-Bench single-answer style: the judge reads a rubric with the
instruction and the response (`rubric`, a template with {instruction} and {response};
`DEFAULT_RUBRIC` asks for a short explanation, then "Rating: [[N]]"), in its chat template.

Judges do not always follow the format, so `parse_score` reads, in order of trust: `[[7]]`;
a labelled score (`Rating: 7`, `Score: 7/10`, `評価：7`, `点数: 7点`, `スコア: 7`); a bare
`7/10`, `7 out of 10` or `10点中7点`. Full-width digits count (NFKC). Within a form, the last
match wins (the verdict closes the judgement); a score outside 1-10 is no score. An output with
none is rejected `unparsed_score`, or kept unscored with `unparsed: keep` (an unscored record is
not ranked and passes the selection).

Selection needs the whole collection (or a source's share of it), so it is a GroupByKey by
source, instruction or one key: with `threshold`, records scoring under it leave as
`below_threshold`; with `top_n`, the N best of each group stay and the rest leave as
`not_top_n`; ties are broken by blake2b of `seed:id` (never by arrival order). `per: source`
ranks each source apart, `overall` all together, and `per: instruction` the candidate
responses of one instruction (the respond stage's samples, grouped by `meta.respond.of`; a
record without it is its own group): `top_n: 1` is best-of-n. Without either option the stage
only scores, and every candidate stays with its score (preference data). The score and the
judge model go to `meta["judge"]`. A group's records are held in memory by one worker;
per-source selection bounds that to the largest source, per-instruction to n.

Records without a response (no pair with a non-empty response) pass through unjudged.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from pydantic import Field, field_validator

from iptkit.hashing import seeded_int
from iptkit.transforms.inference.chat_prompt import chat_request
from iptkit.transforms.inference.core import Generation, GenerationRequest, InferenceOptions
from iptkit.transforms.inference.core import sampling_seed as _seed
from iptkit.transforms.record import Record
from iptkit.transforms.stage import KEPT, REJECTS, ByGroup, Drop, ModelStage, merge

UNPARSED, BELOW, NOT_TOP = "unparsed_score", "below_threshold", "not_top_n"

DEFAULT_RUBRIC = """\
Please act as an impartial judge and evaluate the quality of the response provided by an AI \
assistant to the user instruction displayed below. Consider its helpfulness, relevance, \
accuracy, depth and level of detail, and whether it is written in the language of the \
instruction. Begin your evaluation with a short explanation, then rate the response on a \
scale of 1 to 10 by strictly following this format: "Rating: [[5]]".

[Instruction]
{instruction}

[Response]
{response}"""

_NUM = r"(\d+(?:\.\d+)?)"
# Forms of a score, most trusted first; each captures the number.
SCORE_FORMS = [
    re.compile(r"\[\[\s*" + _NUM + r"\s*(?:/\s*10)?\s*\]\]"),
    re.compile(
        r"(?:rating|score|grade|評価|点数|スコア|得点)\s*[*_]*\s*(?:[:=：]|is|は)\s*[*_\[(「]*\s*"
        + _NUM,
        re.IGNORECASE,
    ),
    re.compile(r"(?<![\d.])" + _NUM + r"\s*(?:/|out of)\s*10(?!\.?\d)", re.IGNORECASE),
    re.compile(r"10\s*点\s*中\s*" + _NUM + r"\s*点"),
]


def parse_score(text: str) -> float | None:
    """The 1-10 score a judge's output gives, or None (see the module docstring for forms)."""
    text = unicodedata.normalize("NFKC", text)
    for form in SCORE_FORMS:
        matches = form.findall(text)
        if matches:
            value = float(matches[-1])
            return value if 1 <= value <= 10 else None
    return None


class JudgeConfig(InferenceOptions):
    """Options of the judge stage (model options are shared with every model stage)."""

    prompt_too_long: Literal["truncate", "reject"] = Field(
        "reject",
        description="a prompt over max_model_len - max_new_tokens tokens: reject (the default "
        "here: a cut prompt loses the rubric or the instruction) or truncate",
    )
    max_new_tokens: int = Field(512, ge=1, description="most tokens of a judgement")
    rubric: str = Field(
        DEFAULT_RUBRIC, description="judge prompt with {instruction} and {response}"
    )
    system: str | None = Field(None, description="system turn before the rubric, if any")
    unparsed: Literal["reject", "keep"] = Field(
        "reject",
        description="an output with no 1-10 score: reject (unparsed_score) or keep unscored",
    )
    threshold: float | None = Field(
        None, ge=1, le=10, description="keep records scoring at least this; null: no threshold"
    )
    top_n: int | None = Field(
        None, ge=1, description="keep the N best records of each group; null: no cap"
    )
    keep_reason: bool = Field(
        False,
        description="keep the judgement's text (up to 1,000 characters) in meta.judge.reason; "
        "the preference stage passes the chosen response's on",
    )
    per: Literal["source", "instruction", "overall"] = Field(
        "source",
        description="rank each source apart, each instruction's candidate responses apart "
        "(respond's samples, by meta.respond.of: top_n 1 is best-of-n), or all records together",
    )

    @field_validator("rubric")
    @classmethod
    def _slots(cls, value: str) -> str:
        for slot in ("{instruction}", "{response}"):
            if slot not in value:
                raise ValueError(f"the rubric needs {slot}")
        return value


def judged_pair(record: Record) -> dict[str, str] | None:
    """The pair a judge reads: the record's first pair with a response."""
    for pair in record.pairs:
        if pair.get("response", "").strip():
            return pair
    return None


def rubric_text(rubric: str, pair: dict[str, str]) -> str:
    # str.replace, not format: braces in instructions and responses are text.
    return rubric.replace("{instruction}", pair["instruction"]).replace(
        "{response}", pair["response"]
    )


def scored(record: Record, generation: Generation, cfg: JudgeConfig) -> Record | Drop:
    """The record with its score in meta["judge"], or why it has none."""
    if generation.error:
        return Drop(generation.error, generation.detail)
    score = parse_score(generation.text)
    if score is None and cfg.unparsed == "reject":
        return Drop(UNPARSED, f"no 1-10 score in: {generation.text[-200:]!r}")
    info = {"score": score, "model": cfg.model, "new_tokens": generation.new_tokens}
    if score is None:
        info["output"] = generation.text[-500:]
    elif cfg.keep_reason:
        info["reason"] = generation.text.strip()[:1000]
    return dataclasses.replace(record, meta={**record.meta, "judge": info})


def group_of(record: Record, per: str) -> str:
    """The selection group a record is ranked in: its source, its instruction (the id respond
    sampled it from, else its own id) or one group for all."""
    if per == "source":
        return record.source
    if per == "instruction":
        return record.meta.get("respond", {}).get("of", record.id)
    return ""


def select(
    records: Iterable[Record], seed: int, threshold: float | None, top_n: int | None
) -> Iterator[Record | tuple[Record, Drop]]:
    """The selection within one group: kept records, and `(record, drop)` for the others."""
    ranked, unscored = [], []
    for r in records:
        (unscored if r.meta["judge"]["score"] is None else ranked).append(r)
    yield from unscored
    ranked.sort(key=lambda r: (-r.meta["judge"]["score"], seeded_int(seed, r.id), r.id))
    place = 0
    for r in ranked:
        score = r.meta["judge"]["score"]
        if threshold is not None and score < threshold:
            yield r, Drop(BELOW, f"score {score:g} < {threshold:g}")
        elif top_n is not None and place >= top_n:
            yield r, Drop(NOT_TOP, f"score {score:g}, rank {place + 1} > {top_n}")
            place += 1
        else:
            place += 1
            yield r


class Judge(
    ModelStage,
    stage="judge",
    config=JudgeConfig,
    summary="LLM-as-judge 1-10 scores with a rubric; top N or threshold, per source, per "
    "instruction (best-of-n) or overall",
):
    """Scores each instruction-response pair, then keeps the top N or those over a threshold
    (a keyed shuffle per source or per instruction, or one group overall)."""

    def wants(self, record: Record) -> bool:
        return judged_pair(record) is not None

    def request(self, record: Record, tokenizer: Any) -> GenerationRequest:
        cfg = self.config
        user = rubric_text(cfg.rubric, judged_pair(record))
        return chat_request(tokenizer, user, _seed(self.seed, record.id), cfg.system)

    def parse(self, record: Record, generation: Generation) -> Record | Drop:
        return scored(record, generation, self.config)

    def run(self, records):
        cfg, seed = self.config, self.seed
        judged = super().run(records)
        if cfg.threshold is None and cfg.top_n is None:
            return judged
        chosen = judged[KEPT] | "Choose" >> ByGroup(
            self,
            lambda r: group_of(r, cfg.per),
            lambda _, group: select(group, seed, cfg.threshold, cfg.top_n),
        )
        return merge([{REJECTS: judged[REJECTS]}, chosen], "Judge")
