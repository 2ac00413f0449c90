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
    hub = InferenceOptions(backend="vllm", model="instruction-pretrain/instruction-synthesizer")
    assert hub.model == "instruction-pretrain/instruction-synthesizer"
    local = InferenceOptions.model_validate(
        {"model": model_dir.name}, context={"base_dir": str(model_dir.parent)}
    )
    assert local.model == str(model_dir) and local.model_spec().prompt_budget == 4096 - 400
    with pytest.raises(ValidationError, match="leaves no room"):
        InferenceOptions(model=str(model_dir), max_model_len=64, max_new_tokens=64)
    with pytest.raises(ValueError, match="exceeds the model's max_position_embeddings 128"):
        TransformersHandler(ModelSpec("transformers", str(model_dir), device="cpu")).load_model()


def test_vllm_is_imported_only_when_a_vllm_handler_loads(model_dir, monkeypatch):
    """vLLM cannot run here (no GPU): this checks the lazy import and what the handler asks of
    vllm.LLM and SamplingParams, through stand-in modules that record the calls."""
    import sys
    import types

    from iptkit.transforms.inference.prompt_handler import make_handler

    handler = make_handler(ModelSpec(
        "vllm", str(model_dir), max_model_len=128, add_special_tokens=False,
        tensor_parallel_size=2, sampling=SamplingSpec(max_new_tokens=8, temperature=0.7),
    ))  # fmt: skip
    assert "vllm" not in sys.modules and handler.share_model_across_processes()
    calls = {}

    class LLM:
        def __init__(self, **kw):
            calls["llm"] = kw

        def generate(self, prompts, params, use_tqdm):
            calls["generate"] = (prompts, params)
            out = types.SimpleNamespace(text=" ok", token_ids=[5, 6])
            return [types.SimpleNamespace(outputs=[out]) for _ in prompts]

    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = LLM, lambda **kw: kw
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)
    engine = handler.load_model()
    assert calls["llm"]["tensor_parallel_size"] == 2 and calls["llm"]["max_model_len"] == 128
    seeds = [sampling_seed(1, "a"), sampling_seed(1, "b")]
    out = handler.run_inference([GenerationRequest("the cat", s) for s in seeds], engine)
    assert [(g.text, g.new_tokens) for g in out] == [(" ok", 2), (" ok", 2)]
    prompts, params = calls["generate"]
    ids = AutoTokenizer.from_pretrained(model_dir)("the cat", add_special_tokens=False)["input_ids"]
    assert prompts[0] == {"prompt_token_ids": ids} and out[0].prompt_tokens == len(ids)
    assert [p["seed"] for p in params] == seeds and params[0]["max_tokens"] == 8
    assert params[0]["temperature"] == 0.7 and params[0]["top_k"] == -1
