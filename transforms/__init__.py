"""iptkit.transforms: one module per pipeline stage.

Each stage keeps its decision in plain functions that tests call without Beam, and wraps them in
a thin `beam.PTransform` that returns the kept records and a tagged output of rejects
(see `iptkit.transforms.stage`).
"""
