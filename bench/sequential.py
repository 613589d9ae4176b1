"""Seeds until decided against a fixed design of equal power, by simulation (no training).

For a true difference of twice the smallest worth knowing (d = sd / 2 here), the sequential design's
power and expected seeds, and the seeds a fixed-size paired t-test needs for the same power.
Prints `ratio:` last: fixed-design seeds over the sequential design's expected seeds (above 1: seeds saved).

    python bench/sequential.py [--looks 3,5,8,12,20] [--paths 40000]
"""

from __future__ import annotations

import argparse

from nnstudy.stats.sequential import BETTER, EQUIVALENT, fixed_design_seeds, naive_false_verdicts, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--looks", default="3,5,8,12,20")
    parser.add_argument("--paths", type=int, default=40_000)
    args = parser.parse_args()
    looks = tuple(int(n) for n in args.looks.split(","))
    sd, d = 1.0, 0.5
    for spending in ("pocock", "obrien-fleming"):
        null = simulate(looks, 0.0, sd, d, spending=spending, paths=args.paths, seed=1)
        alt = simulate(looks, 2 * d, sd, d, spending=spending, paths=args.paths, seed=2)
        fixed = fixed_design_seeds(alt[BETTER], 2 * d, sd)
        print(f"{spending}: no difference: false better/worse {null['better'] + null['worse']:.4f}, equivalent "
              f"{null[EQUIVALENT]:.3f}, mean seeds {null['mean_seeds']:.2f}; difference 2d: power {alt[BETTER]:.3f}, "
              f"mean seeds {alt['mean_seeds']:.2f}, fixed design of equal power {fixed} seeds")
    print(f"naive re-testing at 5% on every look: false better/worse {naive_false_verdicts(looks, paths=args.paths):.4f}")
    alt = simulate(looks, 2 * d, sd, d, paths=args.paths, seed=2)
    print(f"ratio: {fixed_design_seeds(alt[BETTER], 2 * d, sd) / alt['mean_seeds']:.2f}")


if __name__ == "__main__":
    main()
