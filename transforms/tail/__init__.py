"""The tail, from records to shards: chat formatting with loss masks (`formatting`), one view of
HF and sentencepiece tokenizers (`tokenizer`), the mix solver (`mix_solver`) and packing plans
(`packing`). The mix and pack stages in `stages/` are the Beam side of these."""
