"""Pure text functions, no Beam: scripts and languages, shingles, text statistics, n-gram
hashing for contamination, difficulty, and the checks on translations and responses."""
