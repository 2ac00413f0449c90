"""iptkit.transforms: the pipeline's stages and what they are built from.

The contract modules sit at the top: `record` (the Record and Reject that flow between stages),
`document` (the tokenized document of the tail), `typology` (organic / converted / synthetic),
`stage_config` (options every stage accepts) and `stage` (the Stage contract: record, group and
model stages sharing one piece for counters, time, the exception policy and rejects).
Subpackages, each with one kind of module:

- `stages/`: one module per stage a spec may name, module name = stage name; each registers
  itself, so adding a stage is adding a module here (and its test).
- `reading/`: sources (formats, fields) and the read step; benchmark sets for decontamination.
- `text/`: pure text functions: scripts, shingles, statistics, n-gram indexes, output checks.
- `inference/`: the model layer every model stage shares (options, RunInference, backends).
- `synth/`: instruction synthesis: LMOps' text format, templates, the rule miner, tuning data.
- `tail/`: records to shards: formatting, tokenizers, the mix solver, packing plans.
- `dedup/`: Beam building blocks of the dedup stages (connected components).
"""
