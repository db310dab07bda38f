"""The driver: every family measured, models shared, failures contained, resuming."""

import json

import pytest

from backdoorguard.bench.report import render_report
from backdoorguard.bench.store import Store

from .conftest import CountingExecutor, run, write_grid


def rows_by_defense(db):
    with Store(db) as store:
        rows = store.rows()
    out = {}
    for row in rows:
        out.setdefault((row.labels["defense"], row.labels["attack"]), []).append(row)
    return out


def test_each_family_records_its_numbers(tiny_run):
    assert tiny_run["summary"]["done"] == 20 and tiny_run["summary"]["failed"] == 0
    rows = rows_by_defense(tiny_run["db"])
    backdoored = rows[("none", "badnets @0.1")][0]
    assert backdoored.family == "none" and backdoored.metrics["asr"] > 0.5
    assert backdoored.cost["passes"] == 3.0  # the shared model's training: 3 epochs

    purified = rows[("double-purifier", "badnets @0.1")][0]
    assert purified.baseline["asr"] == pytest.approx(
        [r for r in rows[("none", "badnets @0.1")] if r.seed == purified.seed][0].metrics["asr"])
    assert {"clean_acc", "asr", "der", "clean_drop"} <= set(purified.metrics)
    assert purified.result["changes"] == {"epochs": 2} and purified.cost["passes"] == 2.0

    detected = {(r.labels["attack"], r.seed): r for k, v in rows.items()
                if k[0] == "double-detector" for r in v}
    assert detected[("badnets @0.1", 0)].metrics["target_found"] == 1.0
    assert detected[("none", 0)].metrics["score"] < detected[("badnets @0.1", 0)].metrics["score"]
    trigger = detected[("none", 0)].artifacts
    assert trigger == [f"cells/{detected[('none', 0)].key}/trigger.safetensors"]
    assert (tiny_run["db"].with_suffix(".artifacts") / trigger[0]).is_file()

    trained = rows[("double-training", "badnets @0.1")][0]
    assert {"precision", "recall", "n_isolated", "der"} <= set(trained.metrics)
    assert trained.result["details"] == {"epochs": 3}  # the grid's training settings reached it

    audit = rows[("double-audit", "badnets @0.1")][0]
    assert {"n_flagged", "precision", "recall", "suspicion_auroc", "details.threshold"} <= set(
        audit.metrics)
    assert audit.cost["counters"] == {"oracle_calls": 0.0}
    assert audit.versions["torch"]


def test_models_are_trained_once_and_cached(tiny_run, tmp_path):
    # 2 attacks × 2 seeds shared models; one job per non-none cell.
    assert tiny_run["jobs"] == {"model": 4, "cell": 16}
    cache = tiny_run["db"].with_suffix(".artifacts") / "models"
    assert len(list(cache.iterdir())) == 4
    # A second grid adding a defense over the same models trains nothing.
    db = tmp_path / "copy.sqlite"
    grid = write_grid(tmp_path, defenses=["none", "double-purifier"])
    db.with_suffix(".artifacts").mkdir()
    (db.with_suffix(".artifacts") / "models").symlink_to(cache)
    summary, executor = run(grid, db)
    assert executor.jobs == {"model": 0, "cell": 4} and summary["models"]["cached"] == 4


def test_rerun_does_nothing(tiny_run):
    summary, executor = run(tiny_run["grid"], tiny_run["db"])
    assert executor.jobs == {"model": 0, "cell": 0}
    assert summary["already_done"] == 20 and summary["ran"] == 0


def test_failing_cells_do_not_stop_the_grid_and_retry_on_request(tmp_path):
    grid = write_grid(tmp_path, attacks=["none"], defenses=["none", "double-broken",
                                                            "double-purifier"], seeds=[0])
    db = tmp_path / "r.sqlite"
    summary, _ = run(grid, db)
    assert summary["done"] == 2 and summary["failed"] == 1
    failed = [r for r in Store(db).rows() if r.status == "failed"]
    assert len(failed) == 1 and failed[0].error.startswith("RuntimeError: broken on purpose")

    summary, executor = run(grid, db)
    assert executor.jobs["cell"] == 0 and summary["failed_not_retried"] == 1
    summary, executor = run(grid, db, retry_failed=True)
    assert executor.jobs == {"model": 0, "cell": 1} and summary["ran"] == 1
    assert Store(db).attempts()[failed[0].key] == 2


def test_a_failed_model_fails_its_cells_only(tmp_path):
    broken = {"name": "digits", "label": "broken", "models": [{"name": "cnn-small",
                                                              "args": {"depth": 3}}]}
    grid = write_grid(tmp_path, datasets=["digits", broken], attacks=["none"],
                      defenses=["none", "double-purifier"], seeds=[0])
    summary, _ = run(grid, tmp_path / "r.sqlite")
    rows = Store(tmp_path / "r.sqlite").rows()
    assert summary["failed"] == 2 and summary["done"] == 2
    for row in rows:
        assert (row.status == "failed") == (row.labels["dataset"] == "broken")
        if row.status == "failed":
            assert row.error.startswith("training the shared model failed: model 'cnn-small'")


def test_interrupted_run_resumes_to_the_same_report(tiny_run, tmp_path):
    db = tmp_path / "r.sqlite"
    with pytest.raises(KeyboardInterrupt):
        run(tiny_run["grid"], db, CountingExecutor(stop_after=9))
    partial = Store(db).statuses()
    assert 0 < len(partial) < 20 and set(partial.values()) == {"done"}
    summary, executor = run(tiny_run["grid"], db)
    assert summary["already_done"] == len(partial) and summary["done"] == 20 - len(partial)
    # Models already in the cache are not trained again.
    assert executor.jobs["model"] < 4
    with Store(db) as resumed, Store(tiny_run["db"]) as whole:
        for fmt in ("html", "json", "csv"):
            if fmt == "csv":
                continue  # the CSV carries wall times; compared through json below
            assert render_report(resumed, fmt, timings=False) == render_report(
                whole, fmt, timings=False)
        first = json.loads(render_report(whole, "json", timings=False))
        assert first["summary"]["done"] == 20
