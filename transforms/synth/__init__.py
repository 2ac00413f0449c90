"""Instruction synthesis (Cheng et al. 2024): LMOps' synthesizer text format (`lmops_format`),
the M-shot templates (`templates`), the AdaptLLM rule miner (`rule_miner`) and the synthesizer's
tuning data (`tuning_data`)."""
