"""iptkit.configs: the presets shipped with iptkit, as data files.

    deepspeed/  DeepSpeed JSONs, named in a run config as `deepspeed: zero1 | zero2 | zero3`
    models/     model architectures, named as `model: {config: mistral-500m}`
    train/      trainer run configs, named as `python -m iptkit.trainer demo`

In a source checkout this is the repository's configs/ folder; setup.py installs it as the
package iptkit.configs, and the trainer finds it through importlib.resources either way
(`iptkit.trainer.config.CONFIGS_DIR`).
"""
