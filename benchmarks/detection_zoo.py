"""Model-zoo benchmark of the detectors: ROC-AUC, accuracy at the calibrated
threshold, TPR at 5 % FPR, per data set and per attack.

Per data set: `--calib` clean models used only to calibrate each detector's
threshold (`calibrate`, max clean score + 0.1 × spread), and a scored zoo of
`--clean` clean models and backdoored models spread over the attacks (seeds,
targets, trigger placements varied). Regression (synthgaze, rotation): BadNets,
Blended, WaNet with strong triggers at 20 % poisoning, targets near the label
range's edges, and Input-aware without its cross-trigger share, trained twice the
epochs. Classification (digits, mnist5k): BadNets, Blended, WaNet,
Input-aware with the attacks' default triggers at 10 % poisoning, all-to-one,
the target class spread over the classes; each detector's own verdict (MAD
anomaly index > 2) and the class it names are reported beside the calibrated
threshold. Trained models are cached under
benchmarks/.cache/detection_zoo/ (gitignored) keyed by their run settings, and
each scan's result beside them, so a re-run reuses both.

    python benchmarks/detection_zoo.py [--datasets synthgaze:2500 rotation] [--clean 4]
        [--per-attack 2] [--calib 2] [--epochs N] [--detectors drmguard nc featurere]
        [--ablations] [--fast] [--train-only | --trained-only | --cached-only | --stored]
        [--threads 1]

A detector can be named with parameters beyond its defaults,
`--detectors drmguard 'drmguard:displacement=1,margin=1'` (values read as JSON
numbers, booleans or lists, else strings): that variant's rows are stored under the
full name beside the default's, so a variant never replaces the default's results.
Detectors joined by '+' are an ensemble of them (`defenses/detection/ensemble.py`:
each member's score standardised by the calibration models' scores, the maximum
taken), scored from the members' own cached scans:
`--detectors 'drmguard:displacement=1,margin=1,restarts=4+drmguard:trigger=mask'`.

Neural Cleanse on a classification zoo (`nc`) is scored as the calibrated
detector scores it: each class's anomaly index standardised by the calibration
models' (`NeuralCleanse.fit_indices`), the largest taken; `nc:per_class=false`
keeps the raw largest index. Both read the same cached scans.

`--epochs` defaults to 8 for regression and to the data set's recipe for
classification (digits 30, mnist5k 15).

`--train-only` trains the zoo round-robin (calib0, clean0, badnets0, ..., calib1, ...)
so a run stopped early leaves a balanced zoo; `--trained-only` then scans only the
models trained so far, and the page states the zoo actually scanned. `--stored`
re-scores the scans stored in the results file (for a change in how a scan is
scored once calibrated, when the models are no longer cached), loading nothing.

writes docs/results/detection_zoo.json, docs/results/detection_roc_<data>.png and
the results section of docs/detection.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from backdoorguard.config import AttackConfig, TrainRun
from backdoorguard.core.checkpoint import load_model
from backdoorguard.core.metrics import accuracy_at_threshold, auroc, tpr_at_fpr
from backdoorguard.core.runtime import Runtime
from backdoorguard.data import load_dataset, recipe
from backdoorguard.defenses.detection import build_detector
from backdoorguard.defenses.detection.calibration import threshold_from
from backdoorguard.defenses.detection.ensemble import (Ensemble, combine, parse_spec,
                                                       standardisation)
from backdoorguard.defenses.detection.neural_cleanse import NeuralCleanse
from backdoorguard.errors import BadInput
from backdoorguard.pipeline import (ATTACK_STATE, build_attack, clean_subset, resolve, train_run,
                                   write_train_result)
from detection_zoo_page import roc_figure, write_page

CACHE = Path("benchmarks/.cache/detection_zoo")
RESULTS = Path("docs/results/detection_zoo.json")
ATTACKS = ["badnets", "blended", "wanet", "input-aware"]
POISON_RATE = 0.2
CORNERS = ["bottom-right", "top-left", "top-right", "bottom-left"]
# Settings that implant the backdoor in a short training run (at 10 % poisoning,
# 8 epochs, a 5 px patch reached asr@5 0.08, α = 0.15 0.35 and WaNet s = 2 0.02 on
# synthgaze:2500), hence 20 % poisoning and stronger triggers.
ATTACK_PARAMS = {
    "badnets": lambda i, task: {"size": max(4, round(0.2 * min(task.input_shape[1:]))),
                                "position": CORNERS[i % 4], "seed": i},
    "blended": lambda i, task: {"alpha": 0.2 + 0.05 * (i % 2), "seed": i},
    "wanet": lambda i, task: {"strength": 4.0, "seed": i},
    # without the cross-trigger share: on synthgaze:2500 at 20 % poisoning a model
    # learnt it to asr@5 0.41 in 12 epochs, 0.27 with the paper's 0.1
    "input-aware": lambda i, task: {"cross_ratio": 0.0, "seed": i},
}
# Input-aware trains its trigger generator with the model and needs longer: asr@5
# 0.62 in 24 epochs on synthgaze:2500 (clean MAE 2.43, as the clean models').
EPOCH_FACTOR = {"input-aware": 2}
LEARNT = 0.5  # asr@tol from which a backdoored model counts as "the backdoor took"
REGRESSION_EPOCHS = 8
# Classification: the attacks' default triggers took on digits and mnist5k at 10 %
# (ASR 0.94-1.00, docs/attacks.md). SIG is left out: clean-label, ASR 0.00 on
# digits and 0.54 at a 9-point accuracy cost on mnist5k (docs/attacks.md).
CLASSIFICATION_ATTACKS = ["badnets", "blended", "wanet", "input-aware"]
CLASSIFICATION_POISON_RATE = 0.1
CLASSIFICATION_PARAMS = {
    "badnets": lambda i, task: {"position": CORNERS[i % 4], "seed": i},
    "blended": lambda i, task: {"seed": i},
    "wanet": lambda i, task: {"seed": i},
    "input-aware": lambda i, task: {"seed": i},
}
TOOK = 0.5  # ASR from which a backdoored classifier counts as "the backdoor took"
ABLATIONS = {"drmguard-no-rf": ("drmguard", {"angle_ratio": 0.0}),
             "drmguard-no-mtr": ("drmguard", {"kappa": 0.0})}
# --fast: cheaper scans than the detectors' defaults (what fitted in the time we
# had on a shared CPU; stated with every result)
FAST = {"drmguard": {"steps": 100, "restarts": 1}, "nc": {"steps": 100},
        "featurere": {"steps": 100}}


def detector_spec(text: str) -> tuple[str, str, dict]:
    """`--detectors` entry -> (name for the results, method, parameters):
    'drmguard' or 'drmguard:key=value,key=value' (values read as the CLI's
    `--param` reads them); members joined by '+' are an ensemble of them
    (`ensemble` alone: its default members). Raises ValueError naming what is wrong."""
    if "+" in text:
        Ensemble(members=text)  # checks every member
        return text, "ensemble", {"members": text}
    method, params = parse_spec(text)
    return text, method, params


def target_for(task, i: int) -> list[float]:
    """A target near one edge of the label range, alternating edges per model."""
    edge = 0.15 if i % 2 == 0 else 0.85
    return [round(lo + edge * (hi - lo), 2) for lo, hi in task.label_range]


def target_class(task, k: int) -> int:
    """The target class of the k-th backdoored classifier of a zoo: steps of 3
    through the classes, so any 10 consecutive models of a 10-class zoo cover every
    class and each attack's models get targets far apart."""
    return (3 * k) % task.num_outputs


def attacks_for(task) -> list[str]:
    return CLASSIFICATION_ATTACKS if task.is_classification else ATTACKS


def poison_rate_for(task) -> float:
    return CLASSIFICATION_POISON_RATE if task.is_classification else POISON_RATE


def default_epochs(dataset: str) -> int:
    """The training length when `--epochs` is not given: the recipe's for
    classification (the attacks' measured strength uses it), 8 for regression."""
    if load_dataset(dataset).task.is_classification:
        return int(recipe(dataset)["train"]["epochs"])
    return REGRESSION_EPOCHS


def zoo(dataset: str, n_calib: int, n_clean: int, per_attack: int, epochs: int) -> list[dict]:
    task = load_dataset(dataset).task
    models = [{"name": f"calib{i}", "role": "calib", "attack": None, "seed": 100 + i}
              for i in range(n_calib)]
    models += [{"name": f"clean{i}", "role": "clean", "attack": None, "seed": i}
               for i in range(n_clean)]
    if task.is_classification:
        for a, attack in enumerate(CLASSIFICATION_ATTACKS):
            for i in range(per_attack):
                k = a * per_attack + i
                models.append({"name": f"{attack}{i}", "role": "backdoored", "attack": attack,
                               "seed": 10 + k, "target": target_class(task, k),
                               "params": CLASSIFICATION_PARAMS[attack](i, task)})
    else:
        for attack in ATTACKS:
            for i in range(per_attack):
                models.append({"name": f"{attack}{i}", "role": "backdoored", "attack": attack,
                               "seed": 10 + i, "target": target_for(task, i),
                               "params": ATTACK_PARAMS[attack](i, task),
                               "epochs": epochs * EPOCH_FACTOR.get(attack, 1)})
    rate = poison_rate_for(task)
    for model in models:
        attack = None if model["attack"] is None else AttackConfig(
            name=model["attack"], poison_rate=rate, target=model["target"],
            params=model["params"])
        model["run"] = TrainRun(dataset=dataset, attack=attack,
                                train={"epochs": model.get("epochs", epochs)})
    return models


def round_robin(models: list[dict]) -> list[dict]:
    """The zoo's models reordered calib0, clean0, badnets0, blended0, ..., calib1, ...:
    one of each kind per round."""
    groups: dict[str, list[dict]] = {}
    for model in models:
        groups.setdefault(model["attack"] or model["role"], []).append(model)
    rounds = max((len(group) for group in groups.values()), default=0)
    return [group[i] for i in range(rounds) for group in groups.values() if i < len(group)]


def key_of(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def folder_of(model: dict, cache: Path = CACHE) -> Path:
    """Where a zoo entry's trained model is cached: keyed by its run settings and seed."""
    return cache / key_of(model["run"].model_dump(), model["seed"])


def attack_of(model: dict, task, cache: Path = CACHE):
    """A trained backdoored zoo entry's attack, with its learnt trigger (input-aware
    keeps it beside the model) when there is one."""
    state = folder_of(model, cache) / ATTACK_STATE
    return build_attack(model["run"].attack, task, state if state.exists() else None)


def trained(model: dict, runtime: Runtime, cache: Path = CACHE) -> tuple[torch.nn.Module, dict]:
    """The model of a zoo entry and its metrics.json, from `cache` or trained now."""
    folder = folder_of(model, cache)
    if not (folder / "metrics.json").exists():
        start = time.perf_counter()
        result = train_run(model["run"], Runtime(seed=model["seed"], device=runtime.device,
                                        threads=runtime.threads, progress=False))
        write_train_result(result, folder, overwrite=True)
        print(f"  trained {model['name']} in {time.perf_counter() - start:.0f} s: "
              f"{result.metrics.to_dict()}", flush=True)
    net, _ = load_model(folder)
    return net, json.loads((folder / "metrics.json").read_text())


def scanned(folder_key: str, detector_name: str, method: str, params: dict, net, clean,
            runtime: Runtime, cached_only: bool = False) -> dict | None:
    """A scan's score and cost, from the cache or scanned now (None with
    `cached_only` when it is not cached); an ensemble's are its members' scans
    (`ensemble_scan`), scored by `combine_rows`."""
    if method == "ensemble":
        return ensemble_scan(folder_key, params, net, clean, runtime, cached_only)
    detector = build_detector(clean.task, method, params)
    # keyed by every parameter of the detector that changes the scan, so a change of
    # its defaults is a new scan (how a scan is scored once calibrated is not one)
    key = key_of(folder_key, method, scan_params(detector), runtime.seed)
    path = CACHE / "scans" / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    if cached_only:
        return None
    found = detector.inspect(net, clean, runtime=runtime)
    record = {"score": found.score, "seconds": found.cost.seconds, "passes": found.cost.passes,
              "evidence": {k: v for k, v in found.evidence.items()
                           if isinstance(v, (int, float, bool, str))
                           or k == "repeat_scores"}}
    if clean.task.is_classification:
        # the detector's own rule (MAD anomaly index > 2) and the class it blames
        record.update(verdict=bool(found.backdoored), named_target=int(found.target),
                      class_indices=[c["anomaly_index"] for c in found.evidence["per_class"]])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    print(f"    {detector_name}: score {found.score:.4g} ({found.cost.seconds:.0f} s)", flush=True)
    return record


def scan_params(detector) -> dict:
    """The detector's parameters that change its scan (the cache key)."""
    return {k: v for k, v in detector.params().items()
            if k not in getattr(detector, "calibration_keys", ())}


def ensemble_scan(folder_key: str, params: dict, net, clean, runtime: Runtime,
                  cached_only: bool = False) -> dict | None:
    """Each member's scan of an ensemble (cached as the member's own scans); the
    score is set by `combine_rows` once the calibration models are scanned."""
    members = {}
    for spec in Ensemble(**params).specs:
        method, member_params = parse_spec(spec)
        found = scanned(folder_key, spec, method, member_params, net, clean, runtime,
                        cached_only)
        if found is None:
            return None
        members[spec] = {k: v for k, v in found.items() if k != "evidence"}
    record = {"score": None, "members": members,
              "seconds": sum(m["seconds"] for m in members.values()),
              "passes": sum(m["passes"] for m in members.values())}
    if clean.task.is_classification:
        record["verdict"] = any(m["verdict"] for m in members.values())
    return record


def combine_rows(rows: list[dict], name: str | None = None) -> list[dict]:
    """The rows of detector `name` (a `--detectors` entry) scored as the detector
    scores them once calibrated on the calibration rows: an ensemble's members
    standardised by the calibration models' scores, the maximum taken; Neural
    Cleanse on a classifier (`per_class`, the default) each class's anomaly index
    standardised by the calibration models' (`NeuralCleanse.fit_indices`), the
    largest taken and its class named. Any other detector's rows are returned as
    they are. The uncalibrated score stays in `raw_score` (and the class named
    then in `raw_target`)."""
    if "members" in rows[0]:
        ensemble = Ensemble(**detector_spec(name)[2]) if name else None
        specs = list(rows[0]["members"])
        for spec in specs:
            member = ensemble.members[spec] if ensemble else None
            if isinstance(member, NeuralCleanse):
                per_class_rows([row["members"][spec] for row in rows],
                               [row["role"] == "calib" for row in rows], member)
        scales = standardisation({spec: [r["members"][spec]["score"] for r in rows
                                         if r["role"] == "calib"] for spec in specs})
        for row in rows:
            members = row["members"]
            row["score"], leading, z = combine({s: members[s]["score"] for s in specs}, scales)
            row["evidence"] = {"leading": leading, "standardised": z}
            if "named_target" in members[leading]:
                row["named_target"] = members[leading]["named_target"]
        return rows
    if name is not None:
        _, method, params = detector_spec(name)
        if method == "nc":
            per_class_rows(rows, [row["role"] == "calib" for row in rows],
                           NeuralCleanse(**params))
    return rows


def per_class_rows(records: list[dict], calib: list[bool], detector: NeuralCleanse) -> None:
    """Neural Cleanse's per-class calibration on stored scans (`class_indices`, a
    classifier's; others and `per_class=False` are left as they are): learnt on the
    records flagged `calib`, applied to all of them in place."""
    if not detector.per_class or not all("class_indices" in r for r in records):
        return
    for record in records:
        record.setdefault("raw_score", record["score"])
        record.setdefault("raw_target", record.get("named_target"))
    detector.fit_indices([r["class_indices"] for r, c in zip(records, calib) if c])
    for record in records:
        record["score"], record["named_target"], z = detector.standardised(
            record["class_indices"])
        record["standardised_indices"] = z


def attack_success(metrics: dict) -> float:
    """The attack's success on the test set: ASR (classification) or asr@tol."""
    return metrics.get("asr", metrics.get("asr_at_tol", 0.0))


def own_rule(rows: list[dict]) -> dict:
    """The detector's own verdict (`verdict`, its MAD rule) on the scored models:
    accuracy, TPR, FPR, and how often it names the true target class, over all
    backdoored models and over those whose backdoor took (ASR ≥ TOOK)."""
    scored = [r for r in rows if r["role"] != "calib"]
    backdoored = [r for r in scored if r["role"] == "backdoored"]
    clean = [r for r in scored if r["role"] == "clean"]
    took = [r for r in backdoored if attack_success(r["metrics"]) >= TOOK]

    def share(chosen: list[dict], test) -> float | None:
        return sum(bool(test(r)) for r in chosen) / len(chosen) if chosen else None

    return {"own_accuracy": share(scored, lambda r: r["verdict"] == (r["role"] == "backdoored")),
            "own_tpr": share(backdoored, lambda r: r["verdict"]),
            "own_fpr": share(clean, lambda r: r["verdict"]),
            "own_tpr_took": share(took, lambda r: r["verdict"]),
            "names_target": share(backdoored, lambda r: r["named_target"] == r["true_target"]),
            "names_target_took": share(took,
                                       lambda r: r["named_target"] == r["true_target"]),
            "names_target_flagged": share([r for r in backdoored if r["verdict"]],
                                          lambda r: r["named_target"] == r["true_target"]),
            "n_took": len(took)}


def summarise(rows: list[dict], threshold: float, attacks: list[str] = ATTACKS,
              classification: bool = False) -> dict:
    scored = [r for r in rows if r["role"] != "calib"]
    scores = [r["score"] for r in scored]
    truth = [r["role"] == "backdoored" for r in scored]
    out = {"auroc": auroc(scores, truth), "tpr_at_5fpr": tpr_at_fpr(scores, truth),
           "accuracy": accuracy_at_threshold(scores, truth, threshold), "threshold": threshold,
           "n_clean": truth.count(False), "n_backdoored": truth.count(True),
           "seconds_median": float(np.median([r["seconds"] for r in scored])),
           "passes_median": float(np.median([r["passes"] for r in scored]))}
    # backdoors that did not take (asr@tol below LEARNT, ASR below TOOK) are no backdoor
    # to find
    bar = TOOK if classification else LEARNT
    learnt = [r for r in scored if r["attack"] is None or attack_success(r["metrics"]) >= bar]
    out["auroc_learnt"] = auroc([r["score"] for r in learnt],
                                [r["role"] == "backdoored" for r in learnt])
    out["n_learnt"] = sum(r["role"] == "backdoored" for r in learnt)
    out["per_attack"] = {}
    for attack in attacks:
        chosen = [r for r in scored if r["attack"] in (None, attack)]
        if any(r["attack"] == attack for r in chosen):
            out["per_attack"][attack] = auroc([r["score"] for r in chosen],
                                              [r["attack"] is not None for r in chosen])
    if classification:
        out.update(own_rule(rows))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["synthgaze:2500", "rotation"])
    parser.add_argument("--calib", type=int, default=2)
    parser.add_argument("--clean", type=int, default=4)
    parser.add_argument("--per-attack", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: 8 for regression, the data set's "
                             "recipe for classification)")
    parser.add_argument("--detectors", nargs="+", default=["drmguard", "nc", "featurere"])
    parser.add_argument("--ablations", action="store_true")
    parser.add_argument("--fast", action="store_true", help="cheaper scans (see FAST)")
    parser.add_argument("--cached-only", action="store_true",
                        help="report only detectors whose scans are all cached; train nothing")
    parser.add_argument("--train-only", action="store_true",
                        help="train (and cache) the zoo's models, round-robin over roles and "
                             "attacks so an interrupted run leaves a balanced zoo; scan nothing")
    parser.add_argument("--trained-only", action="store_true",
                        help="scan only the zoo's models already trained (cached); train nothing")
    parser.add_argument("--stored", action="store_true",
                        help="re-score the scans stored in the results file (a change in how "
                             "scans are scored once calibrated); load and scan nothing")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in ("calib", "clean", "per_attack", "epochs"):
        value = getattr(args, name)
        if value is not None and value < (1 if name == "epochs" else 0):
            parser.error(f"--{name.replace('_', '-')} {value}: allowed: an integer ≥ "
                         f"{1 if name == 'epochs' else 0}")
    detectors = {}
    for text in args.detectors:
        try:
            name, method, params = detector_spec(text)
        except ValueError as error:
            parser.error(f"--detectors {text}: {error}; allowed: NAME or "
                         f"NAME:key=value,key=value")
        detectors[name] = (method, params)
    for dataset in args.datasets:     # all checked before any model is trained
        try:
            task = load_dataset(dataset).task
        except BadInput as error:
            parser.error(f"--datasets {dataset}: {error}")
        for name, (method, params) in detectors.items():
            if args.train_only:  # nothing is scanned
                break
            try:
                build_detector(task, method, params)
            except BadInput as error:
                parser.error(f"--detectors {name}: {error}")
    runtime = Runtime(seed=args.seed, device="auto", threads=args.threads, progress=False).apply()
    if args.ablations:
        detectors.update(ABLATIONS)
    if args.fast:
        detectors = {name: (method, {**FAST.get(method, {}), **params})
                     for name, (method, params) in detectors.items()}
    for dataset in args.datasets:
        print(f"{dataset}:", flush=True)
        task = load_dataset(dataset).task
        epochs = args.epochs if args.epochs is not None else default_epochs(dataset)
        attacks = attacks_for(task)
        models = zoo(dataset, args.calib, args.clean, args.per_attack, epochs)
        if args.stored:
            rescore_stored(dataset, detectors, task)
            continue
        if args.train_only:
            for model in round_robin(models):
                trained(model, runtime)
            continue
        if args.trained_only:
            models = [m for m in models if (folder_of(m) / "metrics.json").exists()]
        clean = clean_subset(resolve(TrainRun(dataset=dataset)).data, 0.05, seed=args.seed)
        nets = {}
        for model in models:
            folder = folder_of(model)
            if args.cached_only and not (folder / "metrics.json").exists():
                break
            net, record = trained(model, runtime)
            nets[model["name"]] = (net, record, folder.name)
        counts = {kind: sum((m["attack"] or m["role"]) == kind for m in models)
                  for kind in ["calib", "clean", *attacks]}
        results = {"zoo": f"{counts['calib']} calibration + {counts['clean']} clean + "
                          + " + ".join(f"{counts[a]} {a}" for a in attacks if counts[a]) + " models, "
                          f"{poison_rate_for(task):.0%} poisoning, {epochs} epochs"
                          + (f" (input-aware {EPOCH_FACTOR['input-aware']}×)"
                             if counts.get("input-aware") and
                             not task.is_classification else "")
                          + "; clean set "
                          f"{len(clean)} samples",
                   # what the page needs to describe the zoo
                   "attacks": attacks, "took_bar": TOOK if task.is_classification else LEARNT,
                   "detectors": {}}
        if task.is_classification:
            results.update(task="classification",
                           zoo=results["zoo"].replace(" poisoning,", " poisoning (all-to-one, "
                                                      "target class varied),"))
        results["roc"] = f"results/detection_roc_{dataset.replace(':', '_')}.png"
        for name, (method, params) in detectors.items():
            rows = []
            for model in models:
                if model["name"] not in nets:
                    break
                net, record, folder_key = nets[model["name"]]
                print(f"  {model['name']}", flush=True)
                scan = scanned(folder_key, name, method, params, net, clean, runtime,
                               args.cached_only)
                if scan is None:
                    break
                rows.append({"name": model["name"], "role": model["role"],
                             "attack": model["attack"], "metrics": record["metrics"], **scan})
                if task.is_classification:
                    rows[-1]["true_target"] = model.get("target")
            if not rows or len(rows) < len(models):
                print(f"  {name}: " + ("no trained models cached" if not rows else
                                       "not all scans cached") + "; left out", flush=True)
                continue
            record_rows(dataset, name, params, rows, results, attacks, task.is_classification)


def record_rows(dataset: str, name: str, params: dict, rows: list[dict], results: dict,
                attacks: list[str], classification: bool) -> None:
    """Score detector `name`'s rows of one data set (`combine_rows`, the calibrated
    threshold), add them to `results` and write the results file, the ROC figure and
    the page (merged with what is stored for the same zoo)."""
    rows = combine_rows(rows, name)
    threshold, rule = threshold_from([r["score"] for r in rows if r["role"] == "calib"])
    results["detectors"][name] = {"rows": rows, "rule": rule, "params": params,
                                  "summary": summarise(rows, threshold, attacks, classification)}
    print(f"  {name}: {results['detectors'][name]['summary']}", flush=True)
    # written after every detector, so an interrupted run leaves what it measured
    roc_figure(results, dataset, Path("docs") / results["roc"])
    # re-read: another run may have written another data set meanwhile
    all_results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if all_results.get(dataset, {}).get("zoo") == results["zoo"]:
        results["detectors"] = {**all_results[dataset]["detectors"], **results["detectors"]}
    all_results[dataset] = results
    RESULTS.write_text(json.dumps(all_results, indent=1, sort_keys=True) + "\n")
    write_page(all_results)


def as_scanned(row: dict) -> dict:
    """A stored row as its scan gave it, before `combine_rows` scored it."""
    out = {k: v for k, v in row.items() if k not in ("raw_score", "raw_target",
                                                   "standardised_indices")}
    if "raw_score" in row:
        out["score"] = row["raw_score"]
        if row.get("raw_target") is not None:
            out["named_target"] = row["raw_target"]
    return out


def rescore_stored(dataset: str, detectors: dict[str, tuple[str, dict]], task) -> None:
    """`--stored`: each detector's rows re-scored from the scans stored in RESULTS
    under it, or under another name of the same method and scan parameters (e.g.
    `nc:per_class=false` from `nc`); nothing is loaded or scanned."""
    stored = json.loads(RESULTS.read_text()).get(dataset) if RESULTS.exists() else None
    if stored is None:
        print(f"  no results stored for {dataset}; left out", flush=True)
        return
    results = {**stored, "detectors": {}}
    for name, (method, params) in detectors.items():
        if method == "ensemble":
            print(f"  {name}: an ensemble is re-scored from its members' scans, not --stored; "
                  f"left out", flush=True)
            continue
        wanted = scan_params(build_detector(task, method, params))
        source = next((other for other in [name, *stored["detectors"]]
                       if other in stored["detectors"] and "+" not in other
                       and detector_spec(other)[1] == method
                       and scan_params(build_detector(task, method, detector_spec(other)[2]))
                       == wanted), None)
        if source is None:
            print(f"  {name}: no stored scans of these parameters; left out", flush=True)
            continue
        print(f"  {name}: from the stored scans of {source}", flush=True)
        rows = [as_scanned(row) for row in stored["detectors"][source]["rows"]]
        record_rows(dataset, name, params, rows, results, stored["attacks"],
                    task.is_classification)


if __name__ == "__main__":
    main()
