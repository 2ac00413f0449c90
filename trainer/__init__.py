"""iptkit.trainer: the DeepSpeed trainer over iptkit shards.

`python -m iptkit.trainer CONFIG` or `scripts/train.sh CONFIG [launcher args]`. One module
per job: config (the run YAML's schema), data (batches from shards), models (presets and
checkpoints), optim (DeepSpeed JSON and the schedule), checkpoint, export, metrics, and
loop (train(), which reads top to bottom).
"""
