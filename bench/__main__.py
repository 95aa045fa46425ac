"""Benchmarks on demand: ``python -m bench fanout [...]``."""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0] not in ("fanout",):
        print(
            "usage: python -m bench fanout [--mode pusher|stomp|all] [--servers a,b]"
            " [--n 100,1000,10000] [--runs 3]   (see --help)"
        )
        raise SystemExit(2)
    from bench.fanout.run import main as fanout

    fanout(args[1:])


if __name__ == "__main__":
    main()
