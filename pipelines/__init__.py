"""iptkit.pipelines: the `iptkit` command, the spec schema, the spec -> Beam graph builder, and
the run directory with its ledger."""
