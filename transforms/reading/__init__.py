"""Reading: source formats and fields (`sources`), the read step that turns files into records
or rejects at read (`read`), and benchmark sets loaded for contamination checks (`benchmarks`)."""
