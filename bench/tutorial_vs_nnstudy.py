"""Training speed of model A on CIFAR-10: the PyTorch tutorial's loop vs nnstudy's engine.

(a) the "Training a classifier" tutorial as written: ImageFolder over the
    extracted JPEGs with ToTensor + Normalize, DataLoader(shuffle=True,
    num_workers=2), Net(), CrossEntropyLoss, SGD(lr=0.001, momentum=0.9),
    zero_grad/forward/backward/step;
(b) the leanest plain PyTorch loop over the same images held in memory as
    normalised, pre-shuffled float tensors (no metrics, fused SGD): the
    ceiling PyTorch's kernels set for one seed on this machine;
(c) nnstudy: GroupTrainer on variant A of the built-in cifar10-cnn study,
    one seed. Timed: `GroupTrainer.train_epoch` only (training; no test-set
    evaluation, no dataset decode, which is cached).

One epoch each (or --limit images, the same images on both sides), at batch 4
(the tutorial's) and batch 128. Headline: nnstudy images/s / tutorial images/s
at batch 4. The table also shows how close nnstudy comes to the ceiling (b)
and how far (b) itself is above the tutorial, so a missed goal can be told
apart from an engine that wastes time.

    python bench/tutorial_vs_nnstudy.py                  # full: one epoch per measurement
    python bench/tutorial_vs_nnstudy.py --limit 2000     # quick check
"""

from __future__ import annotations

import _common as C
import _tutorial as T
import torch

BATCH_SIZES = (4, 128)


def main() -> None:
    p = C.base_parser(__doc__.split("\n\n")[0], "train on only this many images per measurement (default: the whole epoch, 50,000)")
    T.add_extract_dir(p)
    C.add_repeat(p, default=1)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES),
                   help="batch sizes to compare; the first gives the headline ratio")
    args = p.parse_args()
    device = C.setup(args)
    data = C.load_cifar(args)
    train_idx = C.subset_indices(len(data.train_y), args.limit)
    engine_data = C.limit_data(data, train_idx)

    rows, ratios = [], []
    with T.extracted_cifar(args) as root:
        trainset, testset = T.tutorial_datasets(root)
        T.check_same_order(trainset, testset, data)
        for bs in args.batch_sizes:
            t_tut = t_mem = t_nn = float("inf")
            for _ in range(args.repeat):  # interleaved; each side keeps its fastest
                # (a) the tutorial loop
                T.warm_up_tutorial(device, bs)
                torch.manual_seed(0)
                net = T.Net().to(device)
                criterion, optimizer = T.tutorial_optimizer(net)
                loader = T.tutorial_loader(trainset, bs, shuffle=True, indices=train_idx)
                seconds, n_tut = T.tutorial_train_epoch(net, loader, criterion, optimizer, device, log=C.log_stderr)
                t_tut = min(t_tut, seconds)

                # (b) the in-memory ceiling, same images, same batch size
                T.in_memory_train_epoch(C.limit_data(data, torch.arange(256)), bs, device)  # warm-up
                t_mem = min(t_mem, T.in_memory_train_epoch(engine_data, bs, device))

                # (c) nnstudy's engine, same images, same batch size
                cfg = C.run_config(args, batch_size=bs)
                C.warm_up_engine(cfg, data, device)
                trainer = C.make_trainer(cfg, engine_data, [0], device)
                assert trainer.n_params == C.MODEL_A_PARAMS, trainer.n_params
                t_nn = min(t_nn, C.time_train_epoch(trainer))
            n_nn = len(engine_data.train_y)

            tut_rate, mem_rate, nn_rate = n_tut / t_tut, n_nn / t_mem, n_nn / t_nn
            ratios.append(nn_rate / tut_rate)
            rows.append([bs, n_nn, tut_rate, mem_rate, nn_rate, nn_rate / tut_rate, mem_rate / tut_rate, nn_rate / mem_rate])
            print(f"# batch {bs}: tutorial {tut_rate:,.0f} img/s, in-memory ceiling {mem_rate:,.0f} img/s, "
                  f"nnstudy {nn_rate:,.0f} img/s", flush=True)

    C.print_table(["batch", "images", "tutorial img/s", "ceiling img/s", "nnstudy img/s", "nnstudy/tutorial",
                   "ceiling/tutorial", "nnstudy/ceiling"], rows,
                  title="Model A training speed, one seed (nnstudy timed over GroupTrainer.train_epoch; "
                        "tutorial timed from DataLoader iteration start, incl. worker start-up; "
                        "ceiling: the leanest in-memory PyTorch loop)")
    print(f"\nheadline: batch {args.batch_sizes[0]} ratio (goal at batch 4: >= 6)")
    C.finish(ratios[0])


if __name__ == "__main__":
    main()
