"""The stages a spec may name: one module each, named as the stage is in a spec.

Every module defines one `Stage` subclass (see `iptkit.transforms.stage`) with its options
model; the subclass registers itself when the module is imported, and the registry imports
every module of this package, so a new stage needs no edit anywhere else.
"""
