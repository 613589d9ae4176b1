"""Accuracy parity: the PyTorch tutorial's loop vs nnstudy, model A on CIFAR-10.

For each seed (default 0-4), the tutorial trains Net() for --epochs epochs
(default 2, batch 4, SGD lr 0.001 momentum 0.9, DataLoader shuffle with
torch.manual_seed(seed) set first) and measures test accuracy as the tutorial
does (argmax of the outputs over the test loader). nnstudy trains the same
seeds of the cifar10-cnn study's variant A with `GroupTrainer.fit`
(vectorised) and reports its own test accuracy after the last epoch.

The two are independent implementations with different random streams, so
the per-seed accuracies are two independent samples: the 95% Welch
t-interval of mean(nnstudy) - mean(tutorial) must include 0 (PASS). Headline:
CI half-width / |mean difference| (> 1 means the interval includes 0).

    python bench/accuracy_parity.py                                   # full: 5 seeds x 2 epochs each side
    python bench/accuracy_parity.py --limit 4000 --test-limit 2000    # quick check
"""

from __future__ import annotations

import math
import time

import _common as C
import _tutorial as T
import torch
from scipy import stats

# Reported instead of infinity when the two means are exactly equal.
EQUAL_MEANS_RATIO = 1e6


def main() -> None:
    p = C.base_parser(__doc__.split("\n\n")[0], "train images per epoch on both sides (the same fixed subset; default: all 50,000)")
    T.add_extract_dir(p)
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (0..N-1), at least 2")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--test-limit", type=int, default=None, help="test images on both sides (default: all 10,000)")
    args = p.parse_args()
    if args.seeds < 2:
        p.error("--seeds must be at least 2 (a t-interval needs a variance on each side)")
    device = C.setup(args)
    data = C.load_cifar(args)
    seeds = list(range(args.seeds))
    train_idx = C.subset_indices(len(data.train_y), args.limit)
    test_idx = C.subset_indices(len(data.test_y), args.test_limit, seed=1)
    engine_data = C.limit_data(data, train_idx, test_idx)
    print(f"# {len(engine_data.train_y):,} train / {len(engine_data.test_y):,} test images, batch {args.batch_size}, "
          f"{args.epochs} epochs, seeds {seeds}")

    # The tutorial, one seed after another.
    tutorial_acc, t_tut = [], 0.0
    with T.extracted_cifar(args) as root:
        trainset, testset = T.tutorial_datasets(root)
        T.check_same_order(trainset, testset, data)
        testloader = T.tutorial_loader(testset, args.batch_size, shuffle=False, indices=test_idx)
        for seed in seeds:
            start = time.perf_counter()
            torch.manual_seed(seed)
            net = T.Net().to(device)
            criterion, optimizer = T.tutorial_optimizer(net)
            trainloader = T.tutorial_loader(trainset, args.batch_size, shuffle=True, indices=train_idx)
            for epoch in range(args.epochs):
                T.tutorial_train_epoch(net, trainloader, criterion, optimizer, device, epoch=epoch, log=C.log_stderr)
            tutorial_acc.append(T.tutorial_test_accuracy(net, testloader, device))
            t_tut += time.perf_counter() - start
            print(f"# tutorial seed {seed}: test accuracy {tutorial_acc[-1]:.4f}", flush=True)

    # nnstudy, all seeds together.
    cfg = C.run_config(args, batch_size=args.batch_size, epochs=args.epochs)
    trainer = C.make_trainer(cfg, engine_data, seeds, device)
    start = time.perf_counter()
    trainer.fit(lambda tr, preds: None)
    t_nn = time.perf_counter() - start
    nnstudy_acc = [s.history[-1].test_acc for s in trainer.states]

    rows = [[s, a, b, b - a] for s, a, b in zip(seeds, tutorial_acc, nnstudy_acc)]
    mean_t, mean_n = sum(tutorial_acc) / len(seeds), sum(nnstudy_acc) / len(seeds)
    rows.append(["mean", mean_t, mean_n, mean_n - mean_t])
    rows.append(["sd", stats.tstd(tutorial_acc), stats.tstd(nnstudy_acc), float("nan")])
    C.print_table(["seed", "tutorial acc", "nnstudy acc", "nnstudy - tutorial"], rows,
                  title=f"Test accuracy after {args.epochs} epochs (tutorial {t_tut:.0f} s for all seeds in turn; "
                        f"nnstudy {t_nn:.0f} s vectorised, incl. evaluation)")

    diff = mean_n - mean_t
    res = stats.ttest_ind(nnstudy_acc, tutorial_acc, equal_var=False)
    ci = res.confidence_interval(0.95)
    half = (ci.high - ci.low) / 2
    ok = ci.low <= 0 <= ci.high
    if not math.isfinite(half):  # both samples constant: no spread to judge by
        half = 0.0
        ok = diff == 0
    print(f"\nmean difference (nnstudy - tutorial) {diff:+.4f}; 95% Welch CI [{ci.low:+.4f}, {ci.high:+.4f}] "
          f"(half-width {half:.4f}, df {res.df:.1f}, p {res.pvalue:.3f})")
    print(f"parity: {'PASS' if ok else 'FAIL'} (the interval {'includes' if ok else 'excludes'} 0)")
    ratio = half / abs(diff) if diff != 0 else EQUAL_MEANS_RATIO
    C.finish(min(ratio, EQUAL_MEANS_RATIO))


if __name__ == "__main__":
    main()
