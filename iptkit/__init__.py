"""iptkit: build instruction pre-training corpora with Apache Beam, train on them, evaluate.

This root package is a leaf that imports nothing else of ours: the version, the error types the
CLI turns into clear messages, the one definition of the shard files (`iptkit.shards`), the one
config loader (`iptkit.config_file`: YAML with line marks -> pydantic, for the spec, the run
config and the eval suites) and the one atomic writer (`iptkit.files.atomic_write`).
The code lives in the subpackages `iptkit.pipelines`, `iptkit.transforms`, `iptkit.trainer` and
`iptkit.eval`; the trainer's presets are the data package `iptkit.configs` (configs/).
"""

__version__ = "0.1.0"
