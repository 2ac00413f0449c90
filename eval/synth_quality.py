"""`iptkit synth eval`: an instruction synthesizer scored on held-out context-based tasks, as
Instruction Pre-Training's Table 5 scores it (Cheng et al. 2024, section 5.1).

Input: the JSONL of `iptkit synth tuning-data` (one context a line with its `questions` and
`answers`, optional `options` and `cots`, a `dataset`), read by the same code, so gold pairs are
written in the synthesizer's Table 7 format (options as `- ` lines, the CoT trigger). Datasets
named `--unseen` were not in the synthesizer's tuning data; the others are seen.

Two measures, each with the synthesize stage's own prompt format and parser
(`transforms/synth/lmops_format.py`) and the inference layer's handlers (transformers, vllm or
an OpenAI-compatible endpoint):

- **Response accuracy.** The paper: "Given a raw text and a task instruction, the instruction
  synthesizer generates a response. We compute the F1 similarity between the generated response
  and the gold response." Here: the prompt is the text as the synthesizer reads it followed by
  one gold instruction, `<s> <CON> {text} </CON>\\n\\n<QUE> {instruction} <ANS>`, each gold pair
  asked on its own; the response is the generation up to `</END>`; F1 is SQuAD's token F1
  (lower case, punctuation and English articles removed, white-space tokens), which is what
  "F1 similarity" means in the QA literature the paper draws its tuning data from. The paper
  does not name its F1 further. iptkit's own addition: a CJK character is a token of its own,
  so Japanese and Chinese are not scored as one token per sentence.
- **Instruction-response pair quality.** The paper: "Given a raw text, the instruction
  synthesizer generates a set of instruction-response pairs. We compute the F1 similarity
  between the generated pairs and the gold pairs", zero-shot (the raw text alone) and few-shot
  (3 examples of the same dataset, each a raw text with its pairs, prepended). It does not say
  how pairs are matched. iptkit reports two readings: `pair_text_f1`, the token F1 of all
  generated pairs' text against all gold pairs' text (the sentence read literally), and
  `pair_f1`, iptkit's own set F1: each pair is its instruction and response, pairs are matched
  one to one (the assignment maximising the summed token F1), precision is the matched
  similarity over the generated pairs, recall over the gold ones. Generated pairs are parsed and
  filtered as the synthesize stage keeps them (`parse_pairs`, `filter_pairs`). Few-shot
  examples are chosen by a seeded hash of the two ids; the earliest are dropped while the
  prompt is over the budget.

Each item is scored in [0, 1]; a row is the mean over items (pairs for accuracy, contexts for
quality) per dataset, per split (items pooled) and overall, with its standard error and a 95%
percentile-bootstrap interval (seeded). A failed generation scores 0 and is counted in the
row's flag. Output: OUT/items.jsonl (every prompt's generation and scores) and
OUT/summary.json (`iptkit eval compare` and `iptkit report` read it).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iptkit.errors import ConfigError
from iptkit.eval.synth_scores import SUITE, pair_score, response_text, summary_rows, token_f1
from iptkit.hashing import seeded_int
from iptkit.transforms.inference.core import (
    Generation,
    GenerationRequest,
    ModelSpec,
    NoTokenizer,
    encode,
    sampling_seed,
    spec_tokenizer,
)
from iptkit.transforms.synth.lmops_format import (
    ANS,
    END,
    QUE,
    ParseCounts,
    cook_example,
    cook_read,
    filter_pairs,
    parse_pairs,
)
from iptkit.transforms.synth.tuning_data import TaskExample, read_examples

ITEMS_FILE = "items.jsonl"
PAPER_SHOTS = 3  # Table 5's few-shot setting
MAX_PAIR_CHARS = 4000  # the synthesize stage's default filter

# ---------------------------------------------------------------------------------------------
# Prompts


def response_prompt(example: TaskExample, pair: dict[str, str]) -> str:
    """The text, then one gold instruction waiting for its answer."""
    return f"{cook_read(example.context)}{QUE} {pair['instruction']} {ANS}"


def demonstrations(
    example: TaskExample, pool: Sequence[TaskExample], k: int, seed: int
) -> list[TaskExample]:
    """`k` other examples of the same dataset, chosen by a seeded hash of the two ids."""
    others = [e for e in pool if e.dataset == example.dataset and e.id != example.id]
    others.sort(key=lambda e: (seeded_int(seed, f"{example.id}|{e.id}"), e.id))
    return others[:k]


def pairs_prompt(
    example: TaskExample, demos: list[TaskExample], tokenizer: Any, spec: ModelSpec
) -> tuple[str, list[TaskExample]]:
    """Finished examples, then the text to synthesize for; the earliest examples are dropped
    while the prompt is over the budget (not counted without a tokenizer: an endpoint)."""
    demos = list(demos)
    while True:
        prompt = "".join(cook_example(d.context, d.pairs) for d in demos)
        prompt += cook_read(example.context)
        if not demos or isinstance(tokenizer, NoTokenizer):
            return prompt, demos
        if len(encode(tokenizer, prompt, spec.add_special_tokens)) <= spec.prompt_budget:
            return prompt, demos
        demos.pop(0)


# ---------------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True)
class Request:
    """One prompt of the evaluation and what it is scored against."""

    kind: str  # "response" or "pairs"
    example: TaskExample
    prompt: str
    shots: int = 0
    pair: int | None = None  # the gold pair asked (response)
    demos: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        if self.kind == "response":
            return f"{self.example.id}#{self.pair}"
        return f"{self.example.id}@{self.shots}"


def generate(spec: ModelSpec, requests: Sequence[Request], seed: int) -> list[Generation]:
    """Every request's generation through the inference layer's handler for `spec` (its
    tokenization, length policy and failure isolation), a batch at a time."""
    from iptkit.transforms.inference.prompt_handler import make_handler

    if not requests:
        return []
    handler = make_handler(spec)
    model = handler.load_model()
    size = handler.batch_size(spec)
    out: list[Generation] = []
    try:
        for start in range(0, len(requests), size):
            batch = [
                GenerationRequest(r.prompt, sampling_seed(seed, f"{r.kind}:{r.id}"))
                for r in requests[start : start + size]
            ]
            out += handler.run_inference(batch, model)
    finally:
        close = getattr(model, "close", None)
        if callable(close):
            close()
    return out


def score(request: Request, generation: Generation) -> dict[str, Any]:
    """One item of OUT/items.jsonl: the request, its generation and its scores."""
    example = request.example
    item: dict[str, Any] = {
        "kind": request.kind,
        "id": request.id,
        "dataset": example.dataset,
        "context_id": example.id,
        "shots": request.shots,
        "error": generation.error,
        "detail": generation.detail,
        "generated": generation.text,
    }
    if request.kind == "response":
        gold = example.pairs[request.pair or 0]
        answer = "" if generation.error else response_text(generation.text)
        return {
            **item,
            "instruction": gold["instruction"],
            "gold": gold["response"],
            "response": answer,
            "f1": token_f1(answer, gold["response"]) if answer else 0.0,
        }
    counts = ParseCounts()
    pairs: list[dict[str, str]] = []
    if not generation.error:
        pairs = parse_pairs(generation.text, counts)
        pairs = filter_pairs(pairs, example.context, MAX_PAIR_CHARS, counts)
    result = pair_score(pairs, example.pairs)
    return {
        **item,
        "demos": list(request.demos),
        "gold_pairs": example.pairs,
        "pairs": pairs,
        "parse": counts.as_dict(),
        **{k: v for k, v in dataclasses.asdict(result).items() if k != "matches"},
        "matches": [list(m) for m in result.matches],
    }


# ---------------------------------------------------------------------------------------------
# The command


@dataclass(frozen=True)
class SynthEvalRequest:
    """What `iptkit synth eval` asks for."""

    inputs: list[tuple[Path, str]]
    spec: ModelSpec
    out: Path
    unseen: list[str] | None = None
    shots: tuple[int, ...] = (0, PAPER_SHOTS)
    seed: int = 0
    limit: int | None = None


def read_held_out(inputs: list[tuple[Path, str]], limit: int | None) -> list[TaskExample]:
    """The held-out contexts (the first `limit` of each dataset); bad lines are an error naming
    each file and line."""
    problems: list[str] = []
    examples: list[TaskExample] = []
    for path, dataset in inputs:
        if not path.is_file():
            raise ConfigError(f"{path}: no such file (held-out tasks in the tuning-data schema)")
        examples += read_examples(path, dataset, problems)
    if problems:
        raise ConfigError("bad held-out lines:\n  " + "\n  ".join(problems[:20]))
    if not examples:
        raise ConfigError(f"no held-out contexts in {', '.join(str(p) for p, _ in inputs)}")
    if limit is None:
        return examples
    kept: collections.Counter = collections.Counter()
    chosen = []
    for example in examples:
        if kept[example.dataset] < limit:
            kept[example.dataset] += 1
            chosen.append(example)
    return chosen


def evaluate(request: SynthEvalRequest) -> Any:
    """Generate, score and write OUT/items.jsonl and OUT/summary.json; returns the Summary."""
    from iptkit.eval.files import write_json, write_jsonl
    from iptkit.eval.summary import SUMMARY_FILE, Summary

    examples = read_held_out(request.inputs, request.limit)
    datasets = {e.dataset for e in examples}
    unseen = None if request.unseen is None else set(request.unseen)
    if unseen is not None and unseen - datasets:
        raise ConfigError(
            f"--unseen: no held-out data for {', '.join(sorted(unseen - datasets))} "
            f"(the datasets are: {', '.join(sorted(datasets))})"
        )
    spec = request.spec
    out = request.out
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_FILE).unlink(missing_ok=True)  # the old summary would describe another run
    answers = [
        Request("response", e, response_prompt(e, p), pair=i)
        for e in examples
        for i, p in enumerate(e.pairs)
    ]
    # A response ends at its </END>: the synthesizer would go on writing the next pair.
    answer_spec = dataclasses.replace(
        spec, sampling=dataclasses.replace(spec.sampling, stop=(END,))
    )
    tokenizer = spec_tokenizer(spec)
    sets = []
    for k in request.shots:
        for e in examples:
            prompt, demos = pairs_prompt(
                e, demonstrations(e, examples, k, request.seed), tokenizer, spec
            )
            sets.append(Request("pairs", e, prompt, k, None, tuple(d.id for d in demos)))
    generations = generate(answer_spec, answers, request.seed)
    generations += generate(spec, sets, request.seed)
    items = [score(r, g) for r, g in zip(answers + sets, generations, strict=True)]
    write_jsonl(out / ITEMS_FILE, items)
    summary = Summary(
        model=spec.model,
        suite=SUITE,
        rows=summary_rows(items, unseen, request.seed),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        files={"items": ITEMS_FILE},
    )
    write_json(out / SUMMARY_FILE, summary.to_json())
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `iptkit synth eval`."""
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="FILE[=DATASET]",
        help="held-out context-based tasks (the tuning-data JSONL schema); dataset defaults to "
        "each line's `dataset`, else the file stem",
    )
    parser.add_argument("--model", required=True, help="synthesizer folder, hub:ORG/NAME, or "
                        "the served model's name with --base-url")  # fmt: skip
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--unseen",
        action="append",
        metavar="DATASET",
        help="a dataset the synthesizer was not tuned on (repeat); the others count as seen",
    )
    parser.add_argument(
        "--shots",
        type=int,
        nargs="+",
        default=[0, PAPER_SHOTS],
        help="examples prepended for pair quality (paper: 0 and 3)",
    )
    parser.add_argument(
        "--backend", choices=("transformers", "vllm", "openai"), help="default: transformers, "
        "or openai with --base-url"
    )  # fmt: skip
    parser.add_argument(
        "--base-url", help="an OpenAI-compatible endpoint, e.g. http://HOST:8000/v1"
    )
    parser.add_argument("--api-key-env", help="the environment variable holding the API key")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: the model's)")
    parser.add_argument("--max-model-len", type=int, default=4096, help="context length")
    parser.add_argument("--max-new-tokens", type=int, default=400, help="tokens per generation")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per generate call")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"),
                        default="auto")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="few-shot choice and sampling seed")
    parser.add_argument("--limit", type=int, help="contexts per dataset (quick checks only)")


def model_spec(args: argparse.Namespace) -> ModelSpec:
    """The synthesizer's ModelSpec from the command's options, validated as a spec's are
    (paths relative to the working directory); greedy, as the paper decodes."""
    from pydantic import ValidationError

    from iptkit.transforms.inference.core import InferenceOptions

    options: dict[str, Any] = {
        "model": args.model,
        "max_model_len": args.max_model_len,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "device": args.device,
        "dtype": args.dtype,
        "endpoint": "completions",  # the synthesizer's prompts are text, not chat turns
    }
    for key in ("backend", "base_url", "api_key_env", "tokenizer"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    try:
        return InferenceOptions.model_validate(options).model_spec()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"synth eval: {problems}") from None


def run_cli(args: argparse.Namespace) -> int:
    """`iptkit synth eval`: score the synthesizer, print the rows, name the summary."""
    from iptkit.eval.compare import compare, to_markdown
    from iptkit.eval.summary import SUMMARY_FILE, load_summary

    if any(k < 0 for k in args.shots):
        raise ConfigError("--shots: counts of examples, 0 or more")
    inputs = []
    for item in args.inputs:
        path, _, name = item.partition("=")
        inputs.append((Path(path), name or Path(path).name.split(".")[0]))
    request = SynthEvalRequest(
        inputs=inputs,
        spec=model_spec(args),
        out=args.out,
        unseen=args.unseen,
        shots=tuple(dict.fromkeys(args.shots)),
        seed=args.seed,
        limit=args.limit,
    )
    print(f"iptkit: scoring synthesizer {args.model} into {args.out}", flush=True)
    summary = evaluate(request)
    print(to_markdown(compare([load_summary(args.out / SUMMARY_FILE)])), end="")
    for flag in summary.flags:
        print(f"warning: {flag}")
    print(f"summary: {args.out / SUMMARY_FILE}")
    return 0
