"""lm-eval resolves `!function` names against a file beside the task YAML; the loader and the
metrics themselves live in `iptkit.eval.adaptllm` (importable, and unit-tested there)."""

from iptkit.eval.adaptllm import (  # noqa: F401 (named by the task YAMLs)
    acc_results,
    convfinqa_results,
    f1_results,
    headline_f1,
    headline_results,
    load,
    micro_f1,
    ner_results,
    weighted_f1,
)
