"""`synthgaze`: render speed, how well models learn it, and whether they need the iris.

1. Render speed: `generate` of 4,096 patches on one thread, median of several runs,
   as images per second of wall time and of process CPU time (the machine is
   shared: CPU time is the steadier figure).
2. Clean training with the data set's recipe (`backdoorguard train --dataset
   synthgaze` does the same): mean angular error on the fixed test split, against
   predicting the training mean; training time. Then the other image models.
3. Does the task need the iris? The same scenes and labels rendered without iris
   and pupil (and without the glint), trained and tested with the same recipe.
4. A picture: random test patches and gaze sweeps of one scene (docs/synthgaze.png).

    python benchmarks/synthgaze.py [--threads 1] [--speed-runs 5] [--skip-training]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from backdoorguard.config import TrainRun
from backdoorguard.core.metrics import angular_error, angular_errors
from backdoorguard.core.runtime import Runtime
from backdoorguard.core.training import fit, predict
from backdoorguard.core.types import Splits
from backdoorguard.data import load_dataset, recipe, synthgaze
from backdoorguard.models import create_model
from backdoorguard.pipeline import resolve, train_run
from backdoorguard.plots import _save

sys.path.insert(0, str(Path(__file__).parent))

DOCS = Path("docs")


def render_speed(runs: int, n: int = 4096) -> dict:
    walls, cpus = [], []
    for run in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        synthgaze.generate(n, seed=run)
        walls.append(n / (time.perf_counter() - wall))
        cpus.append(n / (time.process_time() - cpu))
    return {"images": n, "runs": runs, "threads": torch.get_num_threads(),
            "images_per_second_wall": round(statistics.median(walls)),
            "images_per_second_cpu": round(statistics.median(cpus)),
            "all_wall": [round(v) for v in walls], "all_cpu": [round(v) for v in cpus]}


def gaze_numbers(outputs: torch.Tensor, y: torch.Tensor) -> dict:
    errors = angular_errors(outputs, y)
    return {"angular_error": round(errors.mean().item(), 3),
            "angular_error_median": round(errors.median().item(), 3),
            "angular_error_p95": round(errors.quantile(0.95).item(), 3),
            "mae_pitch": round((outputs[:, 0] - y[:, 0]).abs().mean().item(), 3),
            "mae_yaw": round((outputs[:, 1] - y[:, 1]).abs().mean().item(), 3)}


def train_named(model: str | None, model_args: dict, runtime: Runtime) -> dict:
    """Train through the pipeline (the `train` command's path) on `synthgaze`."""
    run = TrainRun(dataset="synthgaze", model=model, model_args=model_args)
    cpu = time.process_time()
    result = train_run(run, runtime)
    cpu = time.process_time() - cpu
    test = result.resolved.data.test
    return {"model": result.resolved.model_name, "model_args": result.resolved.model_args,
            "train": result.resolved.train.model_dump(),
            **gaze_numbers(predict(result.model, test.x), test.y),
            "train_seconds": round(result.history.seconds, 1),
            "train_cpu_seconds": round(cpu, 1),
            "epoch_losses": [round(e["loss"], 5) for e in result.history.epochs]}


def train_without(parts: dict, runtime: Runtime) -> dict:
    """The recipe on the same scenes and labels rendered without `parts`."""
    resolved = resolve(TrainRun(dataset="synthgaze"))
    train = synthgaze.generate(synthgaze.TRAIN_SIZE, synthgaze.TRAIN_SEED, **parts)
    test = synthgaze.generate(synthgaze.TEST_SIZE, synthgaze.TEST_SEED, **parts)
    runtime.apply()
    model = create_model(resolved.model_name, train.task, **resolved.model_args)
    cpu = time.process_time()
    history = fit(model, train, resolved.train, runtime=runtime)
    return {"rendered_without": [k for k, v in parts.items() if not v],
            **gaze_numbers(predict(model, test.x), test.y),
            "train_seconds": round(history.seconds, 1),
            "train_cpu_seconds": round(time.process_time() - cpu, 1)}


def sample_figure(data: Splits, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 8
    sweep = torch.linspace(-1.0, 1.0, cols)
    yaw_sweep = [(0.0, float(v)) for v in synthgaze.YAW_RANGE[0] + (sweep + 1) / 2 * 70.0]
    pitch_sweep = [(float(p), 0.0) for p in synthgaze.PITCH_RANGE[1] - (sweep + 1) / 2 * 40.0]
    rows = [[(data.test.x[i, 0], tuple(data.test.y[i].tolist())) for i in range(r * cols, (r + 1) * cols)]
            for r in range(3)]
    for labels in (yaw_sweep, pitch_sweep):
        label = torch.tensor(labels)
        # one scene: the same seed for every column, so only the gaze changes
        images = [synthgaze.render(label[i:i + 1, 0], label[i:i + 1, 1],
                                   torch.Generator().manual_seed(11))[0, 0] for i in range(cols)]
        rows.append(list(zip(images, labels)))
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.9 * cols, 1.45 * len(rows)))
    for r, row in enumerate(rows):
        for c, (image, (pitch, yaw)) in enumerate(row):
            ax = axes[r][c]
            ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"pitch {pitch:+.0f}° yaw {yaw:+.0f}°", fontsize=7)
    axes[3][0].set_ylabel("yaw sweep", fontsize=8)
    axes[4][0].set_ylabel("pitch sweep", fontsize=8)
    fig.tight_layout()
    _save(fig, Path(path), dpi=90)


# (name, model, model arguments): None = the data set's recipe
MODELS = {"recipe": (None, {}),
          "preact-resnet18": ("preact-resnet18", {"width": 16}),
          "cnn-small (defaults)": ("cnn-small", {"width": 32, "grid": 3})}
WITHOUT = {"iris and pupil": {"iris": False},
           "iris, pupil and glint": {"iris": False, "glint": False}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--speed-runs", type=int, default=5)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--resume", action="store_true",
                        help="keep the trainings already in the JSON; run the rest")
    parser.add_argument("--page-only", action="store_true",
                        help="rewrite docs/synthgaze.md from the saved JSON")
    parser.add_argument("--out", type=Path, default=DOCS / "results" / "synthgaze.json")
    args = parser.parse_args()
    if args.page_only:
        write_page(json.loads(args.out.read_text()), DOCS / "synthgaze.md")
        return
    torch.set_num_threads(args.threads)
    runtime = Runtime(seed=0, device="cpu", threads=args.threads, progress=False)
    done = json.loads(args.out.read_text()) if args.resume and args.out.exists() else {}
    results: dict = {"threads": args.threads, "recipe": recipe("synthgaze"),
                     "speed": render_speed(args.speed_runs)}
    for key in ("models", "without"):
        results[key] = dict(done.get(key, {}))

    def save(key: str, name: str | None = None, value=None) -> None:
        if name is not None:
            results[key][name] = value
        print(key, name or "", json.dumps(value if name else results[key]), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")

    save("speed")
    data = load_dataset("synthgaze")
    sample_figure(data, DOCS / "synthgaze.png")
    mean = data.train.y.mean(0, keepdim=True).expand_as(data.test.y)
    results["mean_prediction"] = gaze_numbers(mean, data.test.y)
    save("mean_prediction")
    if not args.skip_training:
        # the recipe and the iris check first: they carry the bars
        for name in [m for m in args.models if m == "recipe" and m not in results["models"]]:
            save("models", name, train_named(*MODELS[name], runtime))
        for name, parts in WITHOUT.items():
            if name not in results["without"]:
                save("without", name, train_without(parts, runtime))
        for name in [m for m in args.models if m != "recipe" and m not in results["models"]]:
            save("models", name, train_named(*MODELS[name], runtime))
    write_page(results, DOCS / "synthgaze.md")


def write_page(results: dict, path: Path) -> None:
    from synthgaze_page import page  # the page's text, in the file beside this one

    path.write_text(page(results, synthgaze.SCENE_RANGES))


if __name__ == "__main__":
    main()
