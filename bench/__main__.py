"""Benchmarks on demand: ``python -m bench fanout [...]``, ``python -m bench rush [...]``."""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0] not in ("fanout", "rush", "cluster"):
        print(
            "usage: python -m bench fanout [--mode pusher|stomp|all] [--servers a,b]"
            " [--n 100,1000,10000] [--runs 3]   (see --help)\n"
            "       python -m bench rush [--db sqlite|postgresql] [--rates 100,200,...]"
            " [--locations 200] [--customers 20000]   (see --help)\n"
            "       python -m bench cluster [--nodes 1,2] [--n 200] [--k 500] [--rate 100]"
            "   (see --help)"
        )
        raise SystemExit(2)
    if args[0] == "cluster":
        from bench.cluster.run import main as cluster

        cluster(args[1:])
        return
    if args[0] == "rush":
        from bench.rush.run import main as rush

        rush(args[1:])
        return
    from bench.fanout.run import main as fanout

    fanout(args[1:])


if __name__ == "__main__":
    main()
