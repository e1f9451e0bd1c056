"""First training steps of one incremental step of a benchmark cell: loss terms and gradient norm.

Reproduces the gradient-norm table and the PLOP thresholds quoted in docs/benchmarks.md. It needs
the cell's previous step already trained in ``--out`` (run the bench first), e.g.

    python -m benchmarks.diag_incremental --method plop --task 4-1 --no-preset-params --clip none
    python -m benchmarks.diag_incremental --method plop --task 2-2-1 --step 2

``--no-preset-params`` uses the method config's own (the papers') weights instead of the small
preset's re-tuned ones. Plain SGD as in training (Nesterov, momentum 0.9, the preset's lr); the
printed norm is the one before clipping.
"""

import argparse
import math
from pathlib import Path

import torch

from geociss import bench
from geociss.engine.data import step_sampling
from geociss.engine.runner import ScenarioRunner
from geociss.engine.step import StepData, prepare_step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", required=True)
    ap.add_argument("--task", default="4-1")
    ap.add_argument("--step", type=int, default=1)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--clip", default="preset", help="a norm, 'none' or 'preset'")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--out", default="/tmp/bench-final")
    ap.add_argument("--no-preset-params", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    cfg = bench.experiment("small", args.task, args.method, out / "sample", out / "runs")
    if args.no_preset_params:
        cfg.method.params.update(bench.method_config(args.method).get("params", {}))
    train = cfg.train
    lr = args.lr or train.lr_incremental
    clip = {"preset": train.gradient_clip, "none": None}.get(args.clip)
    clip = float(args.clip) if args.clip not in ("preset", "none") else clip
    runner = ScenarioRunner(cfg, log=print)
    data = runner.experiment_data()
    student, teacher, prev = runner._models(args.step)
    method = runner._method(args.step)
    lut = runner.train_scenario.train_lut(args.step, keep_old=method.keep_old_labels)
    regions = data.step_regions(runner.train_scenario, args.step)
    sampling = step_sampling(cfg.data, runner.train_scenario, args.step, method.keep_old_labels)[0]
    step_data = StepData(
        data.train.tiles, runner.schema, regions, lut, sampling, data.mean, data.std,
        data.scaling.clip,
    )
    module, dm = prepare_step(
        student, teacher, method, step_data, train, step=args.step, restore=prev.extra_tensors
    )
    if getattr(method, "thresholds", None) is not None:
        print("pseudo-label thresholds", [round(float(t), 4) for t in method.thresholds])
    groups = method.param_groups(module.model, lr, train.head_lr_mult, train.weight_decay)
    opt = torch.optim.SGD(
        groups, lr=lr, momentum=0.9, nesterov=True, weight_decay=train.weight_decay
    )
    params = [p for p in module.model.parameters() if p.requires_grad]
    dm.setup("fit")
    module.train()
    for i, batch in enumerate(dm.train_dataloader()):
        x, y = module.augment(module.normalise(batch["image"], batch.get("nodata")), batch["mask"])
        out_s = module.model(x, features=method.student_features())
        with torch.no_grad():
            old = module.teacher(x, features=method.teacher_features())
        terms = method.losses({"image": x, "mask": y}, out_s, old)
        loss = torch.stack([v.float() for v in terms.values()]).sum()
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip else math.inf)
        opt.step()
        shown = {k: f"{float(v):.4g}" for k, v in terms.items()}
        print(f"step {i}: {shown} gradient norm {float(norm):.3g}", flush=True)
        if i + 1 >= args.steps or not math.isfinite(float(loss)):
            break


if __name__ == "__main__":
    main()
