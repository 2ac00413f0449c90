"""iptkit: build instruction pre-training corpora with Apache Beam, train on them, evaluate.

This root package is a leaf that imports nothing else of ours: the version, the error types the
CLI turns into clear messages, and the one definition of the shard files (`iptkit.shards`).
The code lives in the subpackages `iptkit.pipelines`, `iptkit.transforms`, `iptkit.trainer` and
`iptkit.eval`.
"""

__version__ = "0.1.0"
