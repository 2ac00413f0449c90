"""iptkit.trainer: the DeepSpeed trainer over iptkit shards (see DESIGN.md)."""
