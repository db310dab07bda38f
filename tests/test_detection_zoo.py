"""The detection-zoo benchmark (benchmarks/detection_zoo.py): how it builds a
classification zoo, and the arithmetic of its summaries."""

import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import detection_zoo as dz  # noqa: E402
import detection_zoo_page as page  # noqa: E402


@pytest.fixture(scope="module")
def digits_zoo():
    return dz.zoo("digits", 4, 10, 4, dz.default_epochs("digits"))


def test_classification_zoo_roles_attacks_and_rates(digits_zoo):
    roles = Counter(m["role"] for m in digits_zoo)
    assert roles == {"calib": 4, "clean": 10, "backdoored": 16}
    backdoored = [m for m in digits_zoo if m["role"] == "backdoored"]
    assert Counter(m["attack"] for m in backdoored) == {
        "badnets": 4, "blended": 4, "wanet": 4, "input-aware": 4}
    for model in backdoored:
        attack = model["run"].attack
        assert attack.poison_rate == 0.1 and attack.mode == "all-to-one"
        assert attack.target == model["target"]
    assert all(m["run"].attack is None for m in digits_zoo if m["role"] != "backdoored")
    # every model trains for the recipe's epochs (30 for digits), not the regression 8
    assert {m["run"].train["epochs"] for m in digits_zoo} == {30}
    # distinct training seeds: no two models are the same cached run
    assert len({m["seed"] for m in digits_zoo}) == len(digits_zoo)


def test_classification_targets_cover_the_classes(digits_zoo):
    backdoored = [m for m in digits_zoo if m["role"] == "backdoored"]
    assert all(isinstance(m["target"], int) for m in backdoored)
    assert {m["target"] for m in backdoored} == set(range(10))
    for attack in dz.CLASSIFICATION_ATTACKS:
        targets = [m["target"] for m in backdoored if m["attack"] == attack]
        assert len(set(targets)) == 4, (attack, targets)


def test_badnets_corners_vary_and_sig_is_left_out(digits_zoo):
    corners = [m["params"]["position"] for m in digits_zoo if m["attack"] == "badnets"]
    assert sorted(corners) == sorted(dz.CORNERS)
    assert "sig" not in {m["attack"] for m in digits_zoo}


def test_regression_zoo_keeps_its_settings():
    assert dz.default_epochs("rotation") == 8
    models = dz.zoo("rotation", 1, 1, 1, 8)
    backdoored = [m for m in models if m["role"] == "backdoored"]
    assert [m["attack"] for m in backdoored] == ["badnets", "blended", "wanet", "input-aware"]
    assert all(m["run"].attack.poison_rate == 0.2 for m in backdoored)
    assert all(isinstance(m["target"], list) for m in backdoored)
    # input-aware learns its trigger with the model: no cross-trigger share, twice the epochs
    aware = backdoored[-1]["run"]
    assert aware.attack.params["cross_ratio"] == 0.0 and aware.train["epochs"] == 16
    assert all(m["run"].train["epochs"] == 8 for m in models if m["attack"] != "input-aware")


def test_train_only_needs_no_detector_for_the_task():
    # the default detectors include drmguard (regression only); training a
    # classification zoo scans nothing, so they are not checked
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/detection_zoo.py"),
                           "--datasets", "digits", "--train-only", "--calib", "0", "--clean", "0",
                           "--per-attack", "0"], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr


def row(name, role, score, verdict, named, true=None, asr=None, attack=None):
    metrics = {"clean_acc": 0.99, **({} if asr is None else {"asr": asr})}
    return {"name": name, "role": role, "attack": attack, "score": score, "seconds": 10.0,
            "passes": 5, "verdict": verdict, "named_target": named, "true_target": true,
            "metrics": metrics}


@pytest.fixture
def rows():
    return [
        # calibration models: flagged by the own rule, which must not count
        row("calib0", "calib", 3.0, True, 1), row("calib1", "calib", 2.5, True, 2),
        row("clean0", "clean", 1.0, False, 0), row("clean1", "clean", 1.5, False, 4),
        row("clean2", "clean", 2.5, True, 7), row("clean3", "clean", 0.5, False, 1),
        row("badnets0", "backdoored", 4.0, True, 3, 3, 1.0, "badnets"),
        row("badnets1", "backdoored", 3.5, True, 5, 6, 0.98, "badnets"),
        row("wanet0", "backdoored", 2.8, True, 2, 2, 0.95, "wanet"),
        # a backdoor that did not take (ASR 0.2): missed, names another class
        row("wanet1", "backdoored", 0.8, False, 8, 9, 0.2, "wanet"),
    ]


def test_own_rule_counts_only_scored_models(rows):
    out = dz.own_rule(rows)
    assert out["own_tpr"] == pytest.approx(3 / 4)
    assert out["own_fpr"] == pytest.approx(1 / 4)
    assert out["own_accuracy"] == pytest.approx(6 / 8)
    assert out["own_tpr_took"] == pytest.approx(1.0)
    assert out["n_took"] == 3
    assert out["names_target"] == pytest.approx(2 / 4)
    assert out["names_target_took"] == pytest.approx(2 / 3)
    assert out["names_target_flagged"] == pytest.approx(2 / 3)


def test_classification_summary_uses_asr_and_the_zoo_attacks(rows):
    out = dz.summarise(rows, 3.0, dz.CLASSIFICATION_ATTACKS, classification=True)
    assert out["n_clean"] == 4 and out["n_backdoored"] == 4
    # scores: backdoored 4, 3.5, 2.8, 0.8 against clean 1, 1.5, 2.5, 0.5
    assert out["auroc"] == pytest.approx(13 / 16)
    # wanet1 (ASR 0.2) is no backdoor to find: the rest are all above every clean score
    assert out["n_learnt"] == 3 and out["auroc_learnt"] == pytest.approx(1.0)
    # score > 3.0: badnets0, badnets1 flagged; no clean model
    assert out["accuracy"] == pytest.approx(6 / 8)
    assert set(out["per_attack"]) == {"badnets", "wanet"}
    assert out["per_attack"]["badnets"] == pytest.approx(1.0)
    assert out["per_attack"]["wanet"] == pytest.approx(5 / 8)
    assert out["own_fpr"] == pytest.approx(1 / 4)


def test_regression_summary_has_no_own_rule(rows):
    regression = [{**r, "metrics": {"asr_at_tol": r["metrics"].get("asr", 0.0)}}
                  for r in rows]
    out = dz.summarise(regression, 3.0)
    assert "own_accuracy" not in out and "names_target" not in out
    assert out["n_learnt"] == 3


def test_classification_page_shows_asr_clean_accuracy_and_named_class(rows):
    summary = dz.summarise(rows, 3.0, dz.CLASSIFICATION_ATTACKS, classification=True)
    results = {"digits": {"task": "classification", "attacks": dz.CLASSIFICATION_ATTACKS,
                          "took_bar": dz.TOOK,
                          "zoo": "test zoo", "roc": "results/x.png",
                          "detectors": {"nc": {"rows": rows, "params": {},
                                               "summary": summary}}}}
    text = page.page_section(results)
    assert "| model | role | attack | target | ASR | clean acc | nc |" in text
    assert "asr@tol" not in text and "clean MAE" not in text
    line = next(ln for ln in text.splitlines() if ln.startswith("| badnets1 "))
    assert "| 6 | 0.98 | 0.990 |" in line and "✓ →5" in line
    assert "0.75 / 0.75 / 0.25" in text  # own rule: accuracy / TPR / FPR
    assert not math.isnan(summary["auroc"])


@pytest.mark.parametrize("flag", [["--epochs", "0"], ["--clean", "-1"],
                                  ["--datasets", "digits", "nosuch"]])
def test_bad_counts_are_one_line_errors(flag):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/detection_zoo.py"),
                           "--datasets", "digits", *flag], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 2
    assert flag[0] in done.stderr and "Traceback" not in done.stderr


def test_detector_spec_names_a_variant_with_its_parameters():
    assert dz.detector_spec("drmguard") == ("drmguard", "drmguard", {})
    name, method, params = dz.detector_spec("drmguard:displacement=1,margin=1.5,lambdas=[0.5]")
    assert name == "drmguard:displacement=1,margin=1.5,lambdas=[0.5]" and method == "drmguard"
    assert params == {"displacement": 1, "margin": 1.5, "lambdas": [0.5]}
    for bad in ("drmguard:margin", "drmguard:", "drmguard:=1"):
        with pytest.raises(ValueError):
            dz.detector_spec(bad)


def test_an_ensemble_spec_is_scored_from_its_members_scans_as_the_detector_scores():
    name, method, params = dz.detector_spec("drmguard+drmguard:trigger=mask")
    assert (name, method, params) == ("drmguard+drmguard:trigger=mask", "ensemble",
                                      {"members": "drmguard+drmguard:trigger=mask"})
    with pytest.raises(ValueError, match="must be one of"):
        dz.detector_spec("drmguard+drmguard:trigger=noise")
    # member "g" on a scale of tenths, "m" of thousandths; calibration models 0-2
    members = [(-0.10, -0.010), (-0.12, -0.012), (-0.11, -0.011),   # calib
               (-0.11, -0.005), (-0.05, -0.011), (-0.115, -0.0115)]  # m finds, g finds, clean
    rows = [{"name": f"m{i}", "role": "calib" if i < 3 else "other",
             "members": {"g": {"score": g}, "m": {"score": m}}}
            for i, (g, m) in enumerate(members)]
    scored = dz.combine_rows(rows)
    assert [r["evidence"]["leading"] for r in scored[3:5]] == ["m", "g"]
    # z = (score - mean of the calibration scores) / their sample standard deviation
    assert scored[3]["score"] == pytest.approx((-0.005 + 0.011) / 0.001)
    assert scored[4]["score"] == pytest.approx((-0.05 + 0.11) / 0.01)
    assert scored[5]["score"] < min(scored[3]["score"], scored[4]["score"])


@pytest.mark.parametrize("spec", ["drmguard:displacement=-1", "drmguard:margin",
                                  "drmguard:nosuch=1"])
def test_bad_detector_variants_are_one_line_errors(spec):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/detection_zoo.py"),
                           "--datasets", "synthgaze:2500", "--detectors", spec],
                          capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 2
    assert f"--detectors {spec}" in done.stderr and "Traceback" not in done.stderr


def test_calibration_draws_re_role_the_known_clean_models_and_count_rates():
    import detection_calibration as dc

    rows = [{"name": n, "role": role, "score": s} for n, role, s in [
        ("c0", "calib", 0.1), ("c1", "clean", 0.3), ("c2", "clean", 0.2),
        ("b0", "backdoored", 0.25), ("b1", "backdoored", 0.9)]]
    drawn = dc.draw_rows(rows, {"c1", "c2"})
    assert [r["role"] for r in drawn] == ["clean", "calib", "calib", "backdoored", "backdoored"]
    # threshold from c1, c2: 0.3 + 0.1 × 0.1 = 0.31; c0 passes, b0 is missed, b1 flagged
    assert dc.rates(drawn) == {"accuracy": pytest.approx(2 / 3), "fpr": 0.0, "tpr": 0.5}


def test_nc_rows_are_scored_per_class_as_the_calibrated_detector_scores_them():
    import nc_per_class

    # class 2 is naturally anomalous on every clean model; the backdoored model's
    # class 0 stands out only a little by the raw index
    indices = {"c0": [0.5, 0.4, 3.0], "c1": [0.7, 0.6, 3.4], "c2": [0.6, 0.5, 3.2],
               "clean": [0.6, 0.5, 3.3], "bd": [2.0, 0.5, 3.1]}
    rows = [{"name": n, "role": "calib" if n.startswith("c") and n != "clean" else "other",
             "class_indices": a, "score": max(a), "named_target": a.index(max(a))}
            for n, a in indices.items()]
    assert rows[3]["score"] > rows[4]["score"]  # NC's own score ranks the clean model higher
    scored = dz.combine_rows([dict(r) for r in rows], "nc")
    # class 0's spread over the calibration models (0.1) is below the floor (1)
    assert scored[4]["score"] == pytest.approx((2.0 - 0.6) / 1.0)
    assert scored[4]["named_target"] == 0 and scored[4]["raw_target"] == 2
    assert scored[4]["raw_score"] == 3.1 and scored[3]["score"] < scored[4]["score"]
    # the benchmark of calibration draws calls the same code
    assert nc_per_class.per_class_scores(rows[:3], rows[3:]) == pytest.approx(
        [r["score"] for r in scored[3:]])
    # scored again (another draw of calibration models): from the indices, not the score
    again = dz.combine_rows([dict(r) for r in scored], "nc")
    assert [r["score"] for r in again] == pytest.approx([r["score"] for r in scored])
    assert [dz.as_scanned(r) for r in again] == rows
    # the raw score, and other classification detectors, are left as they are
    for name in ("nc:per_class=false", "featurere", None):
        assert dz.combine_rows([dict(r) for r in rows], name) == rows


def test_an_ensembles_neural_cleanse_member_is_scored_per_class_first():
    # member "nc" (classification scans with class indices) and "featurere"; class 2
    # is anomalous on every calibration model, the last model's backdoor is class 0
    indices = [[0.5, 0.4, 3.0], [0.7, 0.6, 3.4], [0.6, 0.5, 3.2], [2.5, 0.5, 3.1]]
    rows = [{"name": f"m{i}", "role": "calib" if i < 3 else "other",
             "members": {"nc": {"score": max(a), "class_indices": a,
                                "named_target": a.index(max(a))},
                         "featurere": {"score": 1.0 + 0.1 * (i % 2), "named_target": 1}}}
            for i, a in enumerate(indices)]
    scored = dz.combine_rows(rows, "nc+featurere")
    nc = scored[3]["members"]["nc"]
    assert nc["raw_score"] == 3.1 and nc["score"] == pytest.approx((2.5 - 0.6) / 1.0)
    z_nc = [r["members"]["nc"]["score"] for r in scored[:3]]
    mean, sd = sum(z_nc) / 3, (sum((z - sum(z_nc) / 3) ** 2 for z in z_nc) / 2) ** 0.5
    assert scored[3]["evidence"]["standardised"]["nc"] == pytest.approx((nc["score"] - mean) / sd)
    assert scored[3]["evidence"]["leading"] == "nc" and scored[3]["named_target"] == 0
