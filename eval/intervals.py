"""95% confidence intervals of summary rows.

Wilson's score interval for a share (the share of problems solved, of answers matching): unlike
the normal approximation (value ± 1.96 stderr) it stays inside [0, 1] and is not empty when every
example passed or every one failed, which on the small bundled sets is the usual case.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson_interval(share: float, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson's interval for a share observed over `n` examples (None without examples).

    A mean of per-problem pass@k values (fractions when a problem has several samples) is
    treated as a share of `n` trials, one per problem: the problems are the sampling unit.
    """
    if n <= 0:
        return None
    centre = share + z * z / (2 * n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return (
        round(max(0.0, (centre - half) / scale), 6),
        round(min(1.0, (centre + half) / scale), 6),
    )
