"""`python -m iptkit.trainer CONFIG [--set KEY=VALUE ...]`: train one run config.

Also the module the deepspeed launcher starts on every rank (scripts/train.sh),
which appends --local_rank; the rank is read from the environment instead.
"""

from __future__ import annotations

import argparse
import os
import sys

from iptkit.errors import IptkitError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iptkit.trainer", description=__doc__)
    parser.add_argument("config", help="run config YAML (see configs/train)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set stages.0.lr=1e-4 (repeatable)",
    )
    parser.add_argument("--local_rank", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        from iptkit.trainer.config import load_config

        run = load_config(args.config, args.set)
        # Imported only now so that --help and config errors do not wait for torch and DeepSpeed.
        from iptkit.trainer.loop import train

        train(run)
    except IptkitError as exc:
        rank = os.environ.get("RANK")
        prefix = f"[rank {rank}] " if rank not in (None, "0") else ""
        print(f"{prefix}error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
