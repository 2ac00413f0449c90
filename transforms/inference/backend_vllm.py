"""The `vllm` backend: an in-process `vllm.LLM` engine on a GPU worker.

vLLM is imported inside the methods only, so CPU installs never need it (`pip install
iptkit[vllm]` on GPU workers). One engine per worker: `share_model_across_processes` makes Beam
load it once and hand every DoFn process a proxy, and the engine's continuous batching schedules
each batch's prompts itself. Prompts go in as token ids (`TokensPrompt`), encoded and fitted by
the shared layer exactly as the transformers backend does, and each request carries its own
`SamplingParams` seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from iptkit.transforms.inference.core import ModelSpec, spec_tokenizer
from iptkit.transforms.inference.prompt_handler import PromptHandler


class VllmHandler(PromptHandler):
    """RunInference handler around `vllm.LLM.generate`."""

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)

    def share_model_across_processes(self) -> bool:
        return True

    def load_model(self) -> Any:
        from vllm import LLM

        spec = self.spec
        return LLM(
            model=spec.model,
            tokenizer=spec.tokenizer or spec.model,
            dtype=spec.dtype,
            max_model_len=spec.max_model_len,
            tensor_parallel_size=spec.tensor_parallel_size,
            gpu_memory_utilization=spec.gpu_memory_utilization,
            trust_remote_code=spec.trust_remote_code,
        )

    def tokenizer_of(self, model: Any) -> Any:
        # Loaded in this process rather than fetched through the shared engine's proxy.
        return spec_tokenizer(self.spec)

    def generate_ids(
        self, model: Any, prompts: Sequence[list[int]], seeds: Sequence[int]
    ) -> list[tuple[str, int]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        sampling = self.spec.sampling
        params = [
            SamplingParams(
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k if sampling.top_k > 0 else -1,
                max_tokens=sampling.max_new_tokens,
                seed=None if sampling.greedy else seed,
            )
            for seed in seeds
        ]
        outputs = model.generate(
            [TokensPrompt(prompt_token_ids=list(ids)) for ids in prompts], params, use_tqdm=False
        )
        return [(o.outputs[0].text, len(o.outputs[0].token_ids)) for o in outputs]
