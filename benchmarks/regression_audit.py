"""Regression audit bars (issue 7) on barrier-option, MLP, several seeds.

Per seed: a clean surrogate and two poisoned ones (localised poisoning with and
without the clean shell), trained with the data set's recipe; the audit (local
error maximisers against the PDE oracle) on all three; the repair of the
poisoned one; and, separately, active learning against random sampling.

    PYTHONPATH=src python benchmarks/regression_audit.py [--seeds 0-9] [--parts attack,active]
        [--cache /tmp/bg-regression-audit] [--threads 1] [--summary-to FILE.json]

Trained models and per-seed results are cached in `--cache`, so an interrupted
run resumes, and seeds can run in separate processes (`--seeds 0-4` and
`--seeds 5-9`) before a last call (`--seeds 0-9`) assembles the report from the
cache. Writes docs/results/regression_audit.json, two pictures in
docs/results/ and the results section of docs/regression-audit.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from backdoorguard.attacks import create_attack
from backdoorguard.attacks.localized import Localized, ball_sample
from backdoorguard.config import TrainConfig
from backdoorguard.core.checkpoint import load_model, save_model, write_json
from backdoorguard.core.runtime import Runtime
from backdoorguard.core.training import fit, predict
from backdoorguard.core.types import ArrayDataset
from backdoorguard.data import load_dataset, recipe
from backdoorguard.data.options import (FEATURES, RAW_HIGH, RAW_LOW, closed_form_price,
                                        pde_oracle)
from backdoorguard.defenses.audit import ErrorMaximizers
from backdoorguard.defenses.audit.active import ActiveLearning
from backdoorguard.defenses.audit.figures import error_slices_figure
from backdoorguard.defenses.audit.repair import Repair
from backdoorguard.models import create_model
from regression_audit_report import active_figure, markdown, summarise, write_docs

DATASET = "barrier-option"
ATTACK = {"rate": 0.003, "density": 10.0, "shell_ratio": 1.0, "shell_width": 0.5}
AUDIT_BUDGET = 2000
SMALL_BUDGETS = (100, 200, 400)          # how visible each variant is with few calls
ACTIVE_BUDGETS = (500, 1000, 2000, 4000)
REGION_POINTS = 1000
# A flagged maximiser "finds" the planted region when it lies in the attacker's
# footprint: the poisoned ball or the shell around it (1.5 r). The bump a
# poisoned MLP learns spreads further (its error 1.5 r..2 r from the centre is
# still 2-5 × the clean model's), so the report also counts matches within 2 r.
MATCH = 1.0 + ATTACK["shell_width"]
WIDE_MATCH = 2.0
DOCS = Path("docs")
RESULTS = DOCS / "results"
QUICK: dict[str, Any] = {}       # --quick: a smoke test of every code path, not a measurement


def truth(x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(closed_form_price(x), dtype=torch.float32)[:, None]


def rmse(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(model, x) - y).pow(2).mean().sqrt())


def runtime_for(seed: int, threads: int) -> Runtime:
    return Runtime(seed=seed, device="cpu", threads=threads, progress=False)


def trained(name: str, data: ArrayDataset, seed: int, cache: Path, threads: int) -> torch.nn.Module:
    """The recipe's model trained on `data` (loaded from the cache when there)."""
    folder = cache / f"seed{seed}" / name
    if (folder / "model.json").exists():
        return load_model(folder)[0]
    settings = recipe(DATASET)
    runtime = runtime_for(seed, threads).apply()
    model = create_model(settings["model"], data.task)
    fit(model, data, TrainConfig(**{**settings["train"], **QUICK.get("train", {})}),
        runtime=runtime)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, folder, data.task)
    return model.eval()


def planted(task, seed: int, shell: bool) -> Localized:
    params = {k: v for k, v in ATTACK.items() if k != "rate"}
    return create_attack("localized", task, truth=truth, shell=shell, **params)


def region_errors(models: dict[str, torch.nn.Module], attack: Localized,
                  test: ArrayDataset, seed: int) -> dict[str, Any]:
    """RMSE against the closed form inside the ball, in two shells around it, and
    on the test set, for each model."""
    generator = torch.Generator().manual_seed(seed)
    lo, hi = test.task.input_range
    inside = attack.sample_region(REGION_POINTS, seed)
    rings = {"ring_1_1.5": ball_sample(attack.centre, attack.radius, 1.5 * attack.radius,
                                       REGION_POINTS, lo, hi, generator),
             "ring_1.5_2": ball_sample(attack.centre, 1.5 * attack.radius, 2 * attack.radius,
                                       REGION_POINTS, lo, hi, generator)}
    out: dict[str, Any] = {}
    for name, model in models.items():
        out[name] = {"global": rmse(model, test.x, test.y),
                     "region": rmse(model, inside, truth(inside)),
                     **{k: rmse(model, x, truth(x)) for k, x in rings.items()}}
    return out


def audit_summary(audit, attack: Localized | None, box_width: float) -> dict[str, Any]:
    """Found (a suspicious maximiser inside the planted ball) and false regions."""
    def distance(region, key="centre") -> float:
        """Distance of a region's centre (or its maximiser) from the planted centre,
        in planted radii."""
        if attack is None:
            return float("inf")
        return float((torch.tensor(region[key]) - attack.centre).norm()) / attack.radius

    def inside(region) -> bool:
        return distance(region) <= MATCH

    suspicious = [r for r in audit.regions if r["suspicious"]]
    hits = sum(inside(r) for r in suspicious)
    return {"found": bool(hits), "false_regions": len(suspicious) - hits,
            "suspicious": len(suspicious), "oracle_calls": audit.cost.counters["oracle_calls"],
            "seconds": round(audit.cost.seconds, 2),
            "typical_error": audit.details["typical_error"],
            "regions": [{**{k: r[k] for k in ("error", "error_ratio", "density_ratio",
                                               "suspicious")}, "inside": inside(r),
                         "distance_in_radii": distance(r) if attack is not None else None,
                         "maximiser_distance_in_radii":
                             distance(r, "maximiser") if attack is not None else None}
                        for r in audit.regions]}


def visible_share(model, test: ArrayDataset, attack: Localized, threshold: float,
                  seed: int) -> dict[str, float]:
    """How much of the test set, and of the ball of radius 2r, has an error above
    the audit's threshold: the area a screening seed can land in and see the attack."""
    generator = torch.Generator().manual_seed(seed)
    around = ball_sample(attack.centre, 0.0, 2 * attack.radius, REGION_POINTS,
                         *test.task.input_range, generator)
    above = (predict(model, test.x) - test.y).abs()[:, 0] > threshold
    near = (predict(model, around) - truth(around)).abs()[:, 0] > threshold
    return {"test_share": float(above.float().mean()), "ball_2r_share": float(near.float().mean())}


def attack_seed(seed: int, cache: Path, threads: int) -> dict[str, Any]:
    """Everything but active learning for one seed (cached as JSON)."""
    record_path = cache / f"seed{seed}" / "attack.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    data = load_dataset(DATASET)
    runtime = runtime_for(seed, threads)
    models = {"clean": trained("clean", data.train, seed, cache, threads)}
    attacks, poisoned = {}, {}
    for variant, shell in (("shell", True), ("no_shell", False)):
        attacks[variant] = planted(data.task, seed, shell)
        poisoned[variant] = attacks[variant].poison(data.train, ATTACK["rate"], seed)
        models[variant] = trained(variant, poisoned[variant], seed, cache, threads)
    attack = attacks["shell"]
    record: dict[str, Any] = {
        "seed": seed, "centre": attack.centre.tolist(), "radius": attack.radius,
        "poisoned": len(poisoned["shell"].poison_index), "shell_points": attack.shell_count,
        "errors": region_errors(models, attack, data.test, seed), "audit": {}, "visibility": {}}
    for name, model in models.items():
        train = data.train if name == "clean" else poisoned[name]
        oracle = pde_oracle()
        audit = ErrorMaximizers(budget=AUDIT_BUDGET).audit(model, train, oracle, runtime=runtime)
        record["audit"][name] = audit_summary(audit, attacks.get(name), 1.0)
        record["audit"][name]["seconds_per_call"] = oracle.seconds_per_call
        if name == "shell":
            record["repair"] = repair_record(model, train, audit, attack, data, runtime, models)
    for name in ("shell", "no_shell"):
        threshold = ErrorMaximizers().error_factor * record["audit"][name]["typical_error"]
        record["visible"] = record.get("visible", {})
        record["visible"][name] = visible_share(models[name], data.test, attacks[name],
                                                threshold, seed)
        record["visibility"][name] = {
            str(budget): audit_summary(ErrorMaximizers(budget=budget).audit(
                models[name], poisoned[name], pde_oracle(), runtime=runtime), attacks[name], 1.0)
            ["found"] for budget in SMALL_BUDGETS}
    write_json(record_path, record)
    return record


RISE_BANDS = ((0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, float("inf")))


def rise_by_distance(seed: int, record: dict[str, Any], cache: Path) -> list[float]:
    """Where the global MSE rise of the poisoned (shell) model comes from: its
    squared-error increase over the clean model on the test points at 0–1, 1–2,
    2–3 and ≥ 3 radii from the planted centre, each ÷ the clean model's total
    (the four add up to the relative MSE rise)."""
    clean, shell = (load_model(cache / f"seed{seed}" / name)[0] for name in ("clean", "shell"))
    return mse_rise_by_radii(clean, shell, load_dataset(DATASET).test,
                             torch.tensor(record["centre"]), record["radius"])


def mse_rise_by_radii(clean: torch.nn.Module, poisoned: torch.nn.Module, test: ArrayDataset,
                      centre: torch.Tensor, radius: float) -> list[float]:
    """`poisoned`'s squared-error increase over `clean` on the test points in each
    of RISE_BANDS (radii from `centre`), each ÷ the clean model's total."""
    squared = [(predict(m, test.x) - test.y).pow(2)[:, 0] for m in (clean, poisoned)]
    distance = (test.x - centre).norm(dim=1) / radius
    total = float(squared[0].sum())
    return [float((squared[1] - squared[0])[(distance >= lo) & (distance < hi)].sum()) / total
            for lo, hi in RISE_BANDS]


def slices_picture(seed: int, cache: Path, threads: int, path: Path) -> None:
    """The audit picture of one seed's poisoned (shell) model, from the cache."""
    data = load_dataset(DATASET)
    attack = planted(data.task, seed, True)
    train = attack.poison(data.train, ATTACK["rate"], seed)
    model = trained("shell", train, seed, cache, threads)
    audit = ErrorMaximizers(budget=AUDIT_BUDGET).audit(model, train, pde_oracle(),
                                                       runtime=runtime_for(seed, threads))
    error_slices_figure(model, pde_oracle(), audit.regions, path, names=FEATURES,
                        raw_box=(RAW_LOW.tolist(), RAW_HIGH.tolist()))


def repair_record(model, train, audit, attack, data, runtime, models) -> dict[str, Any]:
    out = {}
    for mode in ("relabel", "drop"):
        repaired = Repair(mode=mode).repair(model, train, audit, pde_oracle(), runtime=runtime)
        errors = region_errors({"repaired": repaired.model, "clean": models["clean"]}, attack,
                               data.test, runtime.seed)
        changes = {k: v for k, v in repaired.changes.items() if k != "indices"}
        poisoned = set(train.poison_index.tolist())
        hit = len(poisoned & set(repaired.changes["indices"]))
        out[mode] = {"errors": errors["repaired"], "changes": changes,
                     "oracle_calls": repaired.cost.counters["oracle_calls"],
                     "poison_recall": hit / max(len(poisoned), 1),
                     "precision": hit / max(len(repaired.changes["indices"]), 1)}
    return out


def active_seed(seed: int, cache: Path, threads: int) -> dict[str, Any]:
    record_path = cache / f"seed{seed}" / "active.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    data = load_dataset(DATASET)
    runtime = runtime_for(seed, threads).apply()
    settings = recipe(DATASET)

    def factory():
        torch.manual_seed(seed)
        return create_model(settings["model"], data.task)

    def test_rmse(model):
        return rmse(model, data.test.x, data.test.y)

    learner = ActiveLearning()
    pool = data.train.x
    active = learner.run(factory, pool, data.task, pde_oracle(), ACTIVE_BUDGETS, test_rmse,
                         runtime=runtime)
    random = learner.run_random(factory, pool, data.task, pde_oracle(), ACTIVE_BUDGETS,
                                test_rmse, runtime=runtime)
    record = {"seed": seed, "active": active.to_dict(), "random": random.to_dict()}
    (cache / f"seed{seed}").mkdir(parents=True, exist_ok=True)
    write_json(record_path, record)
    return record


def seed_list(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += list(range(int(lo), int(hi or lo) + 1))
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--parts", default="attack,active")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/bg-regression-audit"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-report", action="store_true", help="only fill the cache")
    parser.add_argument("--summary-to", type=Path, default=None,
                        help="write the summary and per-seed records to this JSON file and "
                             "print the tables; the docs page and pictures are left alone "
                             "(for seeds other than the benchmark's, e.g. held-out checks)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1 epoch, small budgets, nothing written to docs/")
    args = parser.parse_args()
    if args.quick:
        global AUDIT_BUDGET, SMALL_BUDGETS, ACTIVE_BUDGETS, RESULTS, DOCS
        QUICK["train"] = {"epochs": 1}
        AUDIT_BUDGET, SMALL_BUDGETS, ACTIVE_BUDGETS = 300, (100,), (300, 450)
        DOCS = RESULTS = args.cache / "docs"
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    seeds = seed_list(args.seeds)
    attack = [attack_seed(s, args.cache, args.threads) for s in seeds] if "attack" in parts else []
    active = [active_seed(s, args.cache, args.threads) for s in seeds] if "active" in parts else []
    if args.no_report:
        return
    for record in attack:
        record["mse_rise_by_distance"] = rise_by_distance(record["seed"], record, args.cache)
    summary = summarise(attack, active, {"attack": ATTACK, "match": MATCH,
                                          "wide_match": WIDE_MATCH})
    results = {"summary": summary, "attack": attack, "active": active,
               "settings": {"attack": ATTACK, "audit_budget": AUDIT_BUDGET,
                            "active_budgets": list(ACTIVE_BUDGETS)}}
    if args.summary_to:
        write_json(args.summary_to, results)
        print(markdown(summary))
        return
    if attack:
        slices_picture(seeds[0], args.cache, args.threads, RESULTS / "regression_audit_slices.png")
    if active:
        active_figure(summary, active, RESULTS / "regression_audit_active.png")
    write_json(RESULTS / "regression_audit.json", results)
    write_docs(summary, DOCS)
    print(markdown(summary))


if __name__ == "__main__":
    main()
