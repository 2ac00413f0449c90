"""synthesize: instruction-response pairs for raw texts, joined into M-shot augmented records
(Instruction Pre-Training, Cheng et al. 2024; LMOps instruction_pretrain/utils/read_compre.py).

How records go through:

1. Selection: raw records whose hash of `seed:id` falls under `fraction` are converted (the
   paper converts 1/5 of the corpus from scratch, all of it for domain CPT); the others, and
   every record of another kind, pass through unchanged.
2. Chaining: selected records of one source and language are ordered by the hash of `seed:id`
   (never by arrival) and cut into chains of `rounds` (M) records. Chains are cut within hash
   buckets of about `chain_window` records, so no worker holds a whole source.
3. Rounds: round k synthesizes pairs for the k-th record of every chain. Its prompt carries the
   earlier records' texts and pairs (as finished examples ending in `</s>`) while each earlier
   round produced pairs, exactly as LMOps chains them, if the whole prompt fits the budget
   (`max_model_len - max_new_tokens`), counted in real tokens of the synthesizer's tokenizer
   (LMOps estimates words x 1.5, which undercounts Japanese by an order of magnitude); else the
   record's text alone. Each round is one `RunInference` over all chains. With backend `rules`
   the AdaptLLM miner mines the pairs from each text instead.
4. Joining: as LMOps' `cook_pt_entries`, a chain splits where a record did not inherit from the
   one before (it was prompted alone, or produced no pairs); each run of records with pairs
   becomes ONE augmented record (kind `augmented`, id `aug:` + its first member's id, text =
   the members' texts and pairs in ONE style drawn from its key, as LMOps keeps one pattern
   dictionary per text (`synth/templates.py`: layout, pair patterns, option format), `pairs` =
   all pairs, meta["synth"] with the layout, origin synthetic whichever backend wrote the pairs:
   `typology.mark_synthetic`, the head's own origin kept in meta["origin_before"]), and
   its other members leave as rejects with reason `joined` naming it, so the ledger balances
   and nothing is lost. A record that got no pairs stays a raw record, unchanged. A record whose
   inference failed is a reject with the reason (`prompt_too_long`, `inference_failed`).
5. Counting: RUN/STAGE/pairs.json, pairs per raw text and tokens per pair beside the paper's
   (`synth/pair_stats.py`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

import apache_beam as beam
from pydantic import Field

from iptkit.files import atomic_write
from iptkit.hashing import seeded_int
from iptkit.transforms.inference.core import (
    PROMPT_TOO_LONG,
    Generation,
    GenerationRequest,
    InferenceOptions,
    ModelSpec,
    encode,
    load_tokenizer,
    sampling_seed,
    spec_tokenizer,
)
from iptkit.transforms.inference.model_files import local_model_path
from iptkit.transforms.record import Record, coder_bytes, coder_value, shallow_dict
from iptkit.transforms.stage import (
    KEPT,
    Drop,
    Stage,
    StageFn,
    generation_step,
    merge,
    outputs,
)
from iptkit.transforms.synth.lmops_format import (
    ParseCounts,
    cook_example,
    cook_read,
    filter_pairs,
    parse_pairs,
)
from iptkit.transforms.synth.pair_stats import CombineTallies, pair_report, record_tally
from iptkit.transforms.synth.rule_miner import mine
from iptkit.transforms.synth.templates import render_with, style_for
from iptkit.transforms.typology import mark_synthetic

JOINED = "joined"
PAIRS_REPORT = "pairs.json"
AUGMENTED_PREFIX = "aug:"
DONE = "done"  # chains that leave a round without a request (their prompt cannot fit)


class SynthesizeConfig(InferenceOptions):
    """Options of the synthesize stage (model options are shared with every model stage)."""

    chat_endpoint: ClassVar[bool] = False  # LMOps' prompts are plain text, not chat turns

    backend: Literal["rules", "transformers", "vllm"] = Field(  # type: ignore[assignment]
        "rules",
        description="rules: the AdaptLLM rule-based miner (no model); transformers or vllm: "
        "the instruction synthesizer (e.g. instruction-pretrain/instruction-synthesizer)",
    )
    rounds: int = Field(
        2, ge=1, le=16, description="M: records chained per augmented text (M-shot examples)"
    )
    fraction: float = Field(
        1.0,
        ge=0,
        le=1,
        description="share of raw records converted, chosen by hash of seed and id (paper: "
        "0.2 from scratch, 1.0 domain continual pre-training)",
    )
    chain_window: int = Field(
        10_000,
        ge=1,
        description="records per chaining bucket: chains are cut within hash buckets of about "
        "this many records of a source and language, which bounds a worker's memory",
    )
    max_pair_chars: int = Field(
        4000, ge=1, description="drop a synthesized pair whose question + answer is longer"
    )


@dataclass
class MemberResult:
    """What one round made of one chain member. `inherit` is LMOps' inherit_from_prev: the
    member was prompted after the previous one and produced pairs."""

    pairs: list[dict[str, str]] = field(default_factory=list)
    inherit: bool = False
    error: str | None = None
    detail: str = ""
    parse: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    new_tokens: int = 0
    truncated_tokens: int = 0


@dataclass
class Chain:
    """A group of up to M records synthesized round by round; `results[k]` once round k ran."""

    key: str
    members: list[Record]
    results: list[MemberResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "members": [m.to_dict() for m in self.members],
            "results": [shallow_dict(r) for r in self.results],
        }


class ChainCoder(beam.coders.Coder):
    """Canonical JSON for chains, like records: deterministic bytes, no pickled classes."""

    def encode(self, value: Chain) -> bytes:
        return coder_bytes(value.to_dict())

    def decode(self, encoded: bytes) -> Chain:
        d = coder_value(encoded)
        return Chain(
            d["key"], [Record(**m) for m in d["members"]], [MemberResult(**r) for r in d["results"]]
        )

    def is_deterministic(self) -> bool:
        return True


beam.coders.registry.register_coder(Chain, ChainCoder)


def selected(record: Record, seed: int, fraction: float) -> bool:
    """Whether a record is converted: raw, and its hash falls under `fraction`."""
    if record.kind != "raw" or fraction <= 0:
        return False
    return fraction >= 1 or seeded_int(seed + 1, record.id) < fraction * 2**64


def chains_of(records: Iterable[Record], rounds: int, seed: int, key: str) -> Iterator[Chain]:
    """Records cut into chains of `rounds`, in hash order (the last chain may be shorter)."""
    ordered = sorted(records, key=lambda r: (seeded_int(seed, r.id), r.id))
    for start in range(0, len(ordered), rounds):
        yield Chain(f"{key}|{start // rounds}", ordered[start : start + rounds])


def previous_examples(chain: Chain, k: int) -> str:
    """What round k inherits, as LMOps' get_dataset: the finished examples of the members
    before k, back through every member that itself inherited, if member k-1 produced pairs."""
    if k == 0 or not chain.results[k - 1].pairs:
        return ""
    parts: list[str] = []
    idx = k - 1
    while True:
        parts.insert(0, cook_example(chain.members[idx].text, chain.results[idx].pairs))
        if idx == 0 or not chain.results[idx].inherit:
            return "".join(parts)
        idx -= 1


@dataclass(frozen=True)
class Prompt:
    """Round k's prompt for a chain member, whether it carries earlier rounds, and what the
    length policy cut from the member's text (`None` prompt: rejected as too long)."""

    text: str | None
    chained: bool
    tokens: int
    truncated_tokens: int = 0


def build_prompt(chain: Chain, k: int, tokenizer: Any, spec: ModelSpec) -> Prompt:
    """Round k's prompt for member k, within `spec.prompt_budget` tokens of `tokenizer`.

    The earlier rounds come first when everything fits (LMOps' followed_by_next); else the text
    alone; a text that alone is over the budget is cut from its start (`truncate`) or rejected.
    """
    budget = spec.prompt_budget
    text = chain.members[k].text
    own = cook_read(text)
    earlier = previous_examples(chain, k)
    if earlier:
        n = len(encode(tokenizer, earlier + own, spec.add_special_tokens))
        if n <= budget:
            return Prompt(earlier + own, True, n)
    n = len(encode(tokenizer, own, spec.add_special_tokens))
    if n <= budget:
        return Prompt(own, False, n)
    if spec.prompt_too_long == "reject":
        return Prompt(None, False, n)
    # Cut the text's earliest tokens (the shared policy: the earliest context goes first),
    # keeping the format around it; re-measure, since a cut can change tokenization at the seam.
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"
    ]
    cut = n - budget
    while cut < len(offsets):
        kept = text[offsets[cut][0] :]
        m = len(encode(tokenizer, cook_read(kept), spec.add_special_tokens))
        if m <= budget:
            return Prompt(cook_read(kept), False, m, cut)
        cut += m - budget
    return Prompt(None, False, n)


def apply_generation(
    chain: Chain, k: int, prompt: Prompt, generation: Generation, max_pair_chars: int
) -> Chain:
    """The chain with member k's result from its generation (a new chain; inputs untouched)."""
    if generation.error:
        result = MemberResult(
            error=generation.error, detail=generation.detail, prompt_tokens=prompt.tokens
        )
    else:
        counts = ParseCounts()
        pairs = parse_pairs(generation.text, counts)
        pairs = filter_pairs(pairs, chain.members[k].text, max_pair_chars, counts)
        result = MemberResult(
            pairs=pairs,
            inherit=prompt.chained and bool(pairs),
            parse=counts.as_dict(),
            prompt_tokens=generation.prompt_tokens,
            new_tokens=generation.new_tokens,
            truncated_tokens=prompt.truncated_tokens + generation.truncated_tokens,
        )
    return replace(chain, results=[*chain.results, result])


def mine_chain(chain: Chain, seed: int) -> Chain:
    """The rules backend: every member mined from its own text; a member inherits when it and
    the one before have pairs (no prompt, so no budget to break the chain)."""
    results: list[MemberResult] = []
    for member in chain.members:
        pairs = mine(member.text, member.lang, f"{seed}:{member.id}")
        inherit = bool(pairs) and bool(results) and bool(results[-1].pairs)
        results.append(MemberResult(pairs=pairs, inherit=inherit, parse={"kept": len(pairs)}))
    return replace(chain, results=results)


def segments(chain: Chain) -> Iterator[list[int]]:
    """Runs of members that joined into one augmented text (LMOps' cook_pt_entries): a run
    starts at every member that did not inherit; members without pairs are runs of their own."""
    run: list[int] = []
    for i, result in enumerate(chain.results):
        if run and not result.inherit:
            yield run
            run = []
        run.append(i)
    if run:
        yield run


def assemble(chain: Chain, seed: int, model: str) -> Iterator[tuple[Record, Record | Drop]]:
    """What a finished chain leaves, as `(member, decision)`: a run's head becomes its
    augmented record (or stays raw without pairs, or is dropped with its error), the run's other
    members are dropped as joined into it."""
    for run in segments(chain):
        head = chain.members[run[0]]
        first = chain.results[run[0]]
        if first.error:
            yield head, Drop(first.error, first.detail)
            continue
        if not first.pairs:
            yield head, head
            continue
        members = [chain.members[i] for i in run]
        results = [chain.results[i] for i in run]
        aug_id = AUGMENTED_PREFIX + head.id
        examples = [(m.text, r.pairs) for m, r in zip(members, results, strict=True)]
        style = style_for(examples, head.lang, f"{seed}:{aug_id}")
        parse: dict[str, int] = {}
        for r in results:
            for name, n in r.parse.items():
                parse[name] = parse.get(name, 0) + n
        synth = {
            "members": [m.id for m in members],
            "rounds": len(members),
            "model": model,
            "pairs_per_member": [len(r.pairs) for r in results],
            "parse": parse,
            "prompt_tokens": [r.prompt_tokens for r in results],
            "new_tokens": [r.new_tokens for r in results],
            "truncated_tokens": [r.truncated_tokens for r in results],
            "layout": style.layout,
            "question_first": style.question_first,
        }
        yield (
            head,
            mark_synthetic(
                replace(
                    head,
                    id=aug_id,
                    kind="augmented",
                    text=render_with(style, examples),
                    pairs=[p for r in results for p in r.pairs],
                    meta={**head.meta, "synth": synth},
                )
            ),
        )
        for member in members[1:]:
            yield member, Drop(JOINED, f"joined into {aug_id}")


class _BuildPrompts(StageFn):
    """Round k's prompts; a member whose prompt cannot fit leaves the round with its reason."""

    def __init__(self, stage: Synthesize, k: int, spec: ModelSpec):
        super().__init__(stage)
        self._k, self._spec = k, spec

    def setup(self) -> None:
        self._tokenizer = spec_tokenizer(self._spec)

    def process(self, chain: Chain) -> Iterator[Any]:
        with self.timed():
            prompt = build_prompt(chain, self._k, self._tokenizer, self._spec)
        if prompt.text is None:
            result = MemberResult(
                error=PROMPT_TOO_LONG,
                detail=f"{prompt.tokens} prompt tokens > budget {self._spec.prompt_budget}",
                prompt_tokens=prompt.tokens,
            )
            yield beam.pvalue.TaggedOutput(DONE, replace(chain, results=[*chain.results, result]))
            return
        member = chain.members[self._k]
        request = GenerationRequest(prompt.text, sampling_seed(self.stage.seed, member.id))
        yield (chain, prompt), request


class _Update(StageFn):
    """Round k's generation parsed into the chain's k-th result."""

    def __init__(self, stage: Synthesize, k: int):
        super().__init__(stage)
        self._k = k

    def process(self, item: tuple[tuple[Chain, Prompt], Generation]):
        (chain, prompt), generation = item
        if generation.error is None:
            self.count("generated_tokens", generation.new_tokens)
            self.count("chained_prompts", int(prompt.chained))
        with self.timed():
            cfg = self.stage.config
            yield apply_generation(chain, self._k, prompt, generation, cfg.max_pair_chars)


class _Mine(StageFn):
    def process(self, chain: Chain):
        with self.timed():
            yield mine_chain(chain, self.stage.seed)


class _Assemble(StageFn):
    def __init__(self, stage: Synthesize, model: str):
        super().__init__(stage)
        self._model = model

    def process(self, chain: Chain):
        with self.timed():
            pairs = list(assemble(chain, self.stage.seed, self._model))
        for _, out in pairs:
            if isinstance(out, Record):
                self.count("augmented" if out.kind == "augmented" else "no_pairs")
        yield from self.emit(pairs)


class _Tally(StageFn):
    """Each augmented record's pairs, counted (in tokens where the stage has a tokenizer)."""

    def __init__(self, stage: Synthesize, tokenizer: str | None):
        super().__init__(stage)
        self._location = tokenizer

    def setup(self) -> None:
        self._tokenizer = None
        if self._location is not None:
            self._tokenizer = load_tokenizer(local_model_path(self._location))

    def process(self, record: Record):
        if record.kind != "augmented" or "synth" not in record.meta:
            return
        tokens = None
        if self._tokenizer is not None:
            tokens = [
                len(encode(self._tokenizer, f"{p['instruction']}\n{p['response']}", False))
                for p in record.pairs
            ]
        yield record_tally(record.pairs, record.meta["synth"], record.lang, tokens)


class Synthesize(
    Stage,
    stage="synthesize",
    config=SynthesizeConfig,
    summary="instruction-response pairs (synthesizer via RunInference, or rules) -> M-shot "
    "augmented",
):
    """Chains the selected records (by source, language and hash bucket), runs one model round
    per chain member (or the rule miner), and assembles each run of pairs into an augmented
    record. Its graph is several model rounds, so it writes `run` from the shared pieces.
    RUN/STAGE/pairs.json: pairs per raw text and tokens per pair, beside the paper's."""

    def files(self) -> dict[str, str]:
        return {"synth_pairs": self.context.file(PAIRS_REPORT)}

    def _count_tokenizer(self) -> str | None:
        """Where pairs are counted in tokens: `tokenizer`, else the synthesizer's own."""
        cfg = self.config
        if cfg.backend == "openai" and cfg.tokenizer is None:
            return None
        return cfg.tokenizer or cfg.model

    def _report(self, kept: Any) -> None:
        path = self.files()["synth_pairs"]

        def write(tally):
            report = pair_report(tally)
            atomic_write(path, (json.dumps(report, indent=2) + "\n").encode("utf-8"))

        _ = (
            kept
            | "Tally" >> beam.ParDo(_Tally(self, self._count_tokenizer()))
            | "Sum tallies" >> beam.CombineGlobally(CombineTallies())
            | "Write pairs.json" >> beam.Map(write)
        )

    def _round(self, chains: Any, k: int) -> Any:
        spec = self.config.model_spec()
        waiting, idle = chains | f"Has member {k + 1}" >> beam.Partition(
            lambda c, _: 0 if len(c.members) > k else 1, 2
        )
        built = waiting | f"Prompts {k + 1}" >> beam.ParDo(
            _BuildPrompts(self, k, spec)
        ).with_outputs(DONE, main="requests")
        generated = (
            built["requests"]
            | f"Generate {k + 1}" >> generation_step(self, spec)
            | f"Update {k + 1}" >> beam.ParDo(_Update(self, k)).with_output_types(Chain)
        )
        return (generated, built[DONE], idle) | f"Merge {k + 1}" >> beam.Flatten()

    def run(self, records):
        cfg, seed = self.config, self.seed
        chosen, others = records | "Chosen" >> beam.Partition(
            lambda r, _: 0 if selected(r, seed, cfg.fraction) else 1, 2
        )
        keyed = chosen | "Key" >> beam.Map(lambda r: ((r.source, r.lang or ""), r))
        sizes = (
            keyed | "Ones" >> beam.Map(lambda kv: (kv[0], 1)) | "Sizes" >> beam.CombinePerKey(sum)
        )

        def bucket(kv, sizes):
            (source, lang), record = kv
            n_buckets = max(1, sizes[(source, lang)] // cfg.chain_window)
            return (source, lang, seeded_int(seed + 2, record.id) % n_buckets), record

        def cut(item):
            (source, lang, b), members = item
            yield from chains_of(members, cfg.rounds, seed, f"{source}|{lang}|{b}")

        chains = (
            keyed
            | "Bucket" >> beam.Map(bucket, sizes=beam.pvalue.AsDict(sizes))
            | "Group" >> beam.GroupByKey()
            | "Chain" >> beam.FlatMap(cut).with_output_types(Chain)
        )
        if cfg.backend == "rules":
            chains = chains | "Mine" >> beam.ParDo(_Mine(self)).with_output_types(Chain)
            model = "rules"
        else:
            for k in range(cfg.rounds):
                chains = self._round(chains, k)
            model = cfg.model or ""
        done = outputs(chains, _Assemble(self, model), "Assemble")
        if self.context.run.root:  # a stage run outside a run directory writes no side file
            self._report(done[KEPT])
        return merge([done], "Synthesize", passed=others)
