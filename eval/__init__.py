"""iptkit.eval: lm-eval runs, data and model metrics, report rendering (see DESIGN.md)."""
