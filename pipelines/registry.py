"""The stages a spec may name, each with its options model and its PTransform factory.

The builder wires only what the spec names; adding a stage to iptkit means adding one entry
here and one module in `iptkit.transforms`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import apache_beam as beam

from iptkit.files import atomic_write
from iptkit.transforms.stage import ApplyStage
from iptkit.transforms.stage_config import StageConfig
from iptkit.transforms.stages.categorize import Categorize, CategorizeConfig
from iptkit.transforms.stages.decontaminate import Decontaminate, DecontaminateConfig
from iptkit.transforms.stages.dedup_exact import DedupExact, DedupExactConfig
from iptkit.transforms.stages.dedup_near import DedupNear, DedupNearConfig
from iptkit.transforms.stages.extract import Extract, ExtractConfig
from iptkit.transforms.stages.filters import FiltersConfig, QualityFilters
from iptkit.transforms.stages.judge import Judge, JudgeConfig
from iptkit.transforms.stages.langid import LangId, LangidConfig
from iptkit.transforms.stages.mix import Mix, MixConfig
from iptkit.transforms.stages.normalize import Normalize, NormalizeConfig
from iptkit.transforms.stages.pack import Pack, PackConfig
from iptkit.transforms.stages.respond import Respond, RespondConfig
from iptkit.transforms.stages.synthesize import Synthesize, SynthesizeConfig
from iptkit.transforms.stages.translate import Translate, TranslateConfig
from iptkit.transforms.stages.xcit import Xcit, XcitConfig


@dataclass(frozen=True)
class StageContext:
    """What a stage may know about its run besides its own options."""

    name: str
    seed: int
    run_dir: str
    spec_hash: str = ""


@dataclass(frozen=True)
class StageType:
    """A stage iptkit knows: its options model, how to build it, and a line for `validate`."""

    config: type[StageConfig]
    build: Callable[[StageConfig, StageContext], beam.PTransform]
    summary: str
    # Tail stages work on tokenized documents, after every record stage, in STAGES order.
    tail: bool = False


STAGES: dict[str, StageType] = {
    "normalize": StageType(
        NormalizeConfig,
        lambda cfg, ctx: ApplyStage(Normalize(cfg, ctx.name)),
        "Unicode normal form, control characters, whitespace, invalid UTF-8",
    ),
    "langid": StageType(
        LangidConfig,
        lambda cfg, ctx: ApplyStage(LangId(cfg, ctx.name)),
        "fastText language ID (lid.176 by default), keep list, scores, target-script ratio",
    ),
    "filters": StageType(
        FiltersConfig,
        lambda cfg, ctx: ApplyStage(QualityFilters(cfg, ctx.name)),
        "Gopher, C4 and FineWeb quality heuristics; character mode for CJK and Thai",
    ),
    "dedup_exact": StageType(
        DedupExactConfig,
        lambda cfg, ctx: DedupExact(cfg, ctx.name),
        "one record per normalised text (lowest id kept), across or within sources",
    ),
    "dedup_near": StageType(
        DedupNearConfig,
        lambda cfg, ctx: DedupNear(cfg, ctx, atomic_write),
        "MinHash LSH near-duplicate clusters, one survivor each; RUN/STAGE/clusters.json",
    ),
    "extract": StageType(
        ExtractConfig,
        lambda cfg, ctx: Extract(cfg, ctx.seed, ctx.name),
        "chat logs -> instructions: first or every user turn, moderation flags, per-resource cap",
    ),
    "categorize": StageType(
        CategorizeConfig,
        lambda cfg, ctx: ApplyStage(Categorize(cfg, ctx.name)),
        "coding / general / math / reasoning: declared, or EN+JA rule classifier",
    ),
    "xcit": StageType(
        XcitConfig,
        lambda cfg, ctx: ApplyStage(Xcit(cfg, ctx.name)),
        "X-CIT: translation tasks both ways and think-native/answer-target chats; difficulty",
    ),
    "decontaminate": StageType(
        DecontaminateConfig,
        lambda cfg, ctx: Decontaminate(cfg, ctx, atomic_write),
        "benchmark contamination (13-gram, 50-char substring, exact question): report, drop "
        "or mask; RUN/contamination/",
    ),
    "synthesize": StageType(
        SynthesizeConfig,
        lambda cfg, ctx: Synthesize(cfg, ctx.seed, ctx.name),
        "instruction-response pairs (synthesizer via RunInference, or rules) -> M-shot augmented",
    ),
    "translate": StageType(
        TranslateConfig,
        lambda cfg, ctx: Translate(cfg, ctx.seed, ctx.name),
        "LLM translation (chat template, few-shot), validated outputs, seeded retries; parallel link",
    ),
    "respond": StageType(
        RespondConfig,
        lambda cfg, ctx: Respond(cfg, ctx.seed, ctx.name),
        "LLM responses to instructions (chat template); empty or over-long responses rejected",
    ),
    "judge": StageType(
        JudgeConfig,
        lambda cfg, ctx: Judge(cfg, ctx.seed, ctx.name),
        "LLM-as-judge 1-10 scores with a rubric; top N or threshold, per source or overall",
    ),
    "mix": StageType(
        MixConfig,
        lambda cfg, ctx: Mix(cfg, ctx, atomic_write),
        "token ratios over nested groups (kind, lang, ...), total tokens, repeats; RUN/STAGE/report.json",
        tail=True,
    ),
    "pack": StageType(
        PackConfig,
        lambda cfg, ctx: Pack(cfg, ctx),
        "format, tokenize, pack (concat or best fit) into RUN/shards/[STAGE/]SPLIT/ + manifest",
        tail=True,
    ),
}
