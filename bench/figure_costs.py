"""CPU seconds of each figure a study draws, of its sample grid, and of its whole report: the ratios the time left
counts the end of a study in (driver/end_costs.py: GRID_FIGURES, REPORT_WORK).

    python bench/figure_costs.py OUT STUDY      # a finished study's output folder and name (e.g. a quickstart copy)

CPU seconds (time.process_time), each the mean of 3 after one warm-up, so a busy machine changes them little.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def cpu(make, repeat: int = 3) -> float:
    make()
    start = time.process_time()
    for _ in range(repeat):
        make()
    return (time.process_time() - start) / repeat


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("study")
    args = p.parse_args()
    from nnstudy.report import build_report, sample_grid
    from nnstudy.report import figures as F
    from nnstudy.report.probe_figures import mechanism_figures
    from nnstudy.store import Store, load_results

    results = load_results(Store(Path(args.out)), args.study)
    runs = {v: results.runs_of(v) for v in results.variants}
    run, classes = runs[results.baseline][0], results.classes
    cm = np.random.default_rng(0).integers(0, 30, (len(classes), len(classes))).astype(float)
    others = {v: r for v, r in runs.items() if v != results.baseline}
    kinds = {
        "run curves": lambda: F.png_bytes(F.run_curves_figure(run)),
        "run confusion": lambda: F.png_bytes(F.confusion_figure(cm, classes, "variant, seed 0, epoch 1")),
        "study curves": lambda: F.png_bytes(F.study_curves_figure(runs)),
        "difference": lambda: F.png_bytes(F.difference_figure(runs[results.baseline], others, results.baseline)),
        "the probes' figures (all)": lambda: [F.png_bytes(f) for _, f, _ in mechanism_figures(results)],
    }
    seconds = {k: cpu(make) for k, make in kinds.items()}
    n_probe = len(mechanism_figures(results))
    samples = Path(results.out_dir) / "figures" / "samples.png"
    images = np.random.default_rng(0).integers(0, 255, (320, 1, 8, 8), dtype=np.uint8)
    seconds["sample grid (32 tiles)"] = cpu(lambda: sample_grid(images, np.arange(320) % 10, [str(i) for i in range(10)],
                                                                samples.with_name("bench-samples.png")))
    seconds["whole report"] = cpu(lambda: build_report(results), repeat=1)
    for k, s in seconds.items():
        print(f"{k:28s} {s:6.3f} s CPU")
    figures = 1 + bool(others) + len(runs) + n_probe  # as end_costs.report_figures counts them
    drawn = (seconds["study curves"] + seconds["difference"] * bool(others) + len(runs) * seconds["run confusion"]
             + seconds["the probes' figures (all)"])
    mean = drawn / figures
    print(f"report figures {figures}, {drawn:.2f} s CPU, {mean:.3f} s each")
    print(f"ratio grid / figure: {seconds['sample grid (32 tiles)'] / mean:.2f}  (GRID_FIGURES)")
    print(f"ratio report / its figures: {seconds['whole report'] / drawn:.2f}  (REPORT_WORK)")


if __name__ == "__main__":
    main()
