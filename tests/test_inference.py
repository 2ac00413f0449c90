"""The shared inference layer: options, the transformers handler inside a Beam pipeline, the
length policy, failure isolation and seeded sampling, on a tiny Llama built in the test."""

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from pydantic import ValidationError
from synth_helpers import build_tokenizer, save, tiny_llama
from transformers import AutoModelForCausalLM, AutoTokenizer

from iptkit.transforms.inference.backend_transformers import TransformersHandler
from iptkit.transforms.inference.core import (
    INFERENCE_FAILED,
    PROMPT_TOO_LONG,
    Generate,
    Generation,
    GenerationRequest,
    InferenceOptions,
    ModelSpec,
    SamplingSpec,
    fit_ids,
    isolated,
    sampling_seed,
)

WORDS = "the cat sat on a mat and dog ran to red blue house tree sun".split()
PROMPTS = ["the cat sat on", "a dog", "the red house and the blue tree under the sun", "mat"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    tokenizer = build_tokenizer([" ".join(WORDS)], root)
    return save(tiny_llama(tokenizer, seed=1, max_len=128), tokenizer, root)


def spec(model_dir, **kw) -> ModelSpec:
    sampling = SamplingSpec(
        max_new_tokens=kw.pop("max_new_tokens", 8),
        temperature=kw.pop("temperature", 0.0),
        top_k=kw.pop("top_k", 0),
    )
    return ModelSpec(
        backend="transformers",
        model=str(model_dir),
        max_model_len=128,
        device="cpu",
        add_special_tokens=False,
        sampling=sampling,
        **kw,
    )


def bare_greedy(model_dir, prompt: str, n: int) -> str:
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=n, do_sample=False, eos_token_id=tok.eos_token_id)
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def test_handler_in_pipeline_keeps_keys_and_matches_bare_generate(model_dir):
    s = spec(model_dir, batch_size=3)
    expected = [(f"id{i}", bare_greedy(model_dir, p, 8), None) for i, p in enumerate(PROMPTS)]
    assert any(text for _, text, _ in expected)
    with beam.Pipeline() as p:
        out = (
            p
            | beam.Create([(f"id{i}", GenerationRequest(q)) for i, q in enumerate(PROMPTS)])
            | Generate(s)
            | beam.Map(lambda kv: (kv[0], kv[1].text, kv[1].error))
        )
        assert_that(out, equal_to(expected))


def test_left_padded_batch_gives_each_prompt_its_own_output(model_dir):
    handler = TransformersHandler(spec(model_dir, batch_size=4))
    model = handler.load_model()
    together = handler.run_inference([GenerationRequest(q) for q in PROMPTS], model)
    alone = [handler.run_inference([GenerationRequest(q)], model)[0] for q in PROMPTS]
    assert [g.text for g in together] == [g.text for g in alone]
    assert all(0 < g.new_tokens <= 8 and g.prompt_tokens > 0 for g in together)


def test_sampling_is_seeded_per_request_not_per_batch(model_dir):
    handler = TransformersHandler(spec(model_dir, temperature=1.0, top_k=10, max_new_tokens=12))
    model = handler.load_model()
    seeds = [sampling_seed(7, f"r{i}") for i in range(4)]
    batch = [GenerationRequest("the cat", s) for s in seeds]
    together = [g.text for g in handler.run_inference(batch, model)]
    alone = [handler.run_inference([r], model)[0].text for r in reversed(batch)][::-1]
    assert together == alone
    assert len(set(together)) > 1  # different seeds, different samples
    greedy = TransformersHandler(spec(model_dir)).run_inference(batch[:1], model)[0].text
    assert greedy == bare_greedy(model_dir, "the cat", 8)


def test_too_long_prompts_are_truncated_or_rejected(model_dir):
    long_prompt = " ".join(WORDS * 10)  # 150 tokens > 128 - 8
    handler = TransformersHandler(spec(model_dir, prompt_too_long="reject"))
    model = handler.load_model()
    (rejected,) = handler.run_inference([GenerationRequest(long_prompt)], model)
    assert rejected.error == PROMPT_TOO_LONG and "150 prompt tokens > budget 120" in rejected.detail
    handler = TransformersHandler(spec(model_dir, prompt_too_long="truncate"))
    (cut,) = handler.run_inference([GenerationRequest(long_prompt)], model)
    assert cut.error is None and (cut.prompt_tokens, cut.truncated_tokens) == (120, 30)
    assert fit_ids([1, 2, 3, 4], 2, "truncate") == ([3, 4], 2)  # the earliest tokens go
    assert fit_ids([1, 2, 3, 4], 2, "reject") is None


def test_only_failing_elements_fail():
    """LMOps replaces a whole failed batch with dummy output; we retry one by one."""
    calls = []

    def run(items):
        calls.append(list(items))
        if "bad" in items:
            raise RuntimeError("CUDA error on bad")
        return [Generation(text=i.upper()) for i in items]

    out = isolated(["a", "bad", "c"], run)
    assert [g.text for g in out] == ["A", "", "C"]
    assert out[1].error == INFERENCE_FAILED and "RuntimeError: CUDA error on bad" in out[1].detail
    assert calls[0] == ["a", "bad", "c"] and len(calls) == 4


class _Crashing(TransformersHandler):
    """A handler whose whole call fails, past the per-element isolation (an OOM, a segfault)."""

    def run_inference(self, batch, model, inference_args=None):
        raise MemoryError("out of memory")


def test_a_crashing_batch_becomes_failed_generations_not_a_failed_pipeline(model_dir):
    s = spec(model_dir)
    with beam.Pipeline() as p:
        out = (
            p
            | beam.Create([("k1", GenerationRequest("the cat")), ("k2", GenerationRequest("a"))])
            | Generate(s, _Crashing(s))
            | beam.Map(lambda kv: (kv[0], kv[1].error, "out of memory" in kv[1].detail))
        )
        assert_that(out, equal_to([("k1", INFERENCE_FAILED, True), ("k2", INFERENCE_FAILED, True)]))


def test_options(tmp_path, model_dir):
    with pytest.raises(ValidationError, match="backend transformers needs a model"):
        InferenceOptions(backend="transformers")
    with pytest.raises(ValidationError, match="no such folder"):
        InferenceOptions(model="./missing", context={"base_dir": str(tmp_path)})
    hub = InferenceOptions(backend="vllm", model="hub:instruction-pretrain/instruction-synthesizer")
    assert hub.model == "hub:instruction-pretrain/instruction-synthesizer"
    local = InferenceOptions.model_validate(
        {"model": model_dir.name}, context={"base_dir": str(model_dir.parent)}
    )
    assert local.model == str(model_dir) and local.model_spec().prompt_budget == 4096 - 400
    with pytest.raises(ValidationError, match="leaves no room"):
        InferenceOptions(model=str(model_dir), max_model_len=64, max_new_tokens=64)
    with pytest.raises(ValueError, match="exceeds the model's max_position_embeddings 128"):
        TransformersHandler(ModelSpec("transformers", str(model_dir), device="cpu")).load_model()


def test_stop_strings_end_the_output_and_are_cut(model_dir):
    handler = TransformersHandler(spec(model_dir, max_new_tokens=12))
    model = handler.load_model()
    ids = AutoTokenizer.from_pretrained(model_dir)("the cat", add_special_tokens=False)["input_ids"]
    ((full, n_full),) = handler.generate_ids(model, [ids], [0])
    word = full.split()[1]  # a word the greedy output writes, not at its start
    stopped = SamplingSpec(max_new_tokens=12, stop=(f" {word}",))
    ((cut, n_cut),) = handler.generate_ids(model, [ids], [0], stopped)
    assert cut == full[: full.index(f" {word}")] and n_cut < n_full
    # In a batch, a row that stops early leaves the others untouched.
    other = AutoTokenizer.from_pretrained(model_dir)("a dog", add_special_tokens=False)["input_ids"]
    together = handler.generate_ids(model, [ids, other], [0, 0], stopped)
    assert together[0] == (cut, n_cut)
    assert together[1] == handler.generate_ids(model, [other], [0], stopped)[0]


def test_repetition_penalty_changes_greedy_output_and_ignores_padding(model_dir):
    handler = TransformersHandler(spec(model_dir, max_new_tokens=16))
    model = handler.load_model()
    tok = AutoTokenizer.from_pretrained(model_dir)
    prompts = [tok(q, add_special_tokens=False)["input_ids"] for q in PROMPTS]
    plain = handler.generate_ids(model, prompts, [0] * 4)
    penalized = SamplingSpec(max_new_tokens=16, repetition_penalty=5.0)
    strong = handler.generate_ids(model, prompts, [0] * 4, penalized)
    assert strong != plain
    # Fewer repeated tokens in each output, and a row's output does not depend on its padding.
    for (text, _), ids in zip(strong, prompts, strict=True):
        assert handler.generate_ids(model, [ids], [0], penalized)[0][0] == text


def test_generation_options_reach_the_spec_and_are_checked(model_dir):
    opts = InferenceOptions(
        model=str(model_dir), stop=["\n\n"], repetition_penalty=1.1, top_k=5, temperature=0.7
    )
    sampling = opts.model_spec().sampling
    assert sampling.stop == ("\n\n",) and sampling.repetition_penalty == 1.1
    with pytest.raises(ValidationError, match="json_schema: backend transformers cannot"):
        InferenceOptions(model=str(model_dir), json_schema={"type": "object"})
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}
    served = InferenceOptions(
        backend="openai", model="served-name", base_url="http://h/v1", json_schema=schema
    )
    assert served.model == "served-name"  # a name, not a folder
    assert served.model_spec().sampling.json_schema == (
        '{"properties":{"score":{"type":"integer"}},"type":"object"}'
    )
    named = InferenceOptions(base_url="http://h/v1", model="Qwen/Qwen2.5-7B-Instruct")
    assert named.backend == "openai"  # an endpoint named without a backend is backend openai
    with pytest.raises(ValidationError, match="backend openai needs base_url"):
        InferenceOptions(backend="openai", model="m")
    with pytest.raises(ValidationError, match="base_url is for backend openai"):
        InferenceOptions(backend="vllm", model=str(model_dir), base_url="http://h/v1")
    remote = InferenceOptions(backend="vllm", model="gs://bucket/models/llama")
    assert remote.model == "gs://bucket/models/llama"
