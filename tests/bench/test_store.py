"""The results store: whole rows, no double records, refusing foreign or corrupt files."""

import sqlite3

import pytest

from backdoorguard.bench.store import Row, Store
from backdoorguard.errors import BadInput

LABELS = {"dataset": "d", "model": "m", "attack": "a", "defense": "x"}


def row(key: str, status: str = "done", **values) -> Row:
    return Row(key=key, status=status, family="none", labels=LABELS, seed=0, model_key="k",
               config={"seed": 0}, **values)


def test_rows_round_trip_and_reopen(tmp_path):
    db = tmp_path / "r.sqlite"
    with Store(db, create=True) as store:
        store.record([row("a", metrics={"clean_acc": 0.5, "nan": float("nan")}),
                      row("b", "failed", error="boom\ntrace")],
                     {"key": "k", "config": {}, "metrics": {}, "cost": {"seconds": 1.0}})
    with Store(db) as store:
        rows = {r.key: r for r in store.rows()}
        assert rows["a"].metrics["clean_acc"] == 0.5 and rows["a"].labels == LABELS
        assert rows["b"].status == "failed" and rows["b"].error == "boom\ntrace"
        assert store.statuses() == {"a": "done", "b": "failed"}
        assert list(store.model_rows()) == ["k"]


def test_done_rows_are_never_replaced_failed_ones_are(tmp_path):
    with Store(tmp_path / "r.sqlite", create=True) as store:
        store.record([row("a", metrics={"v": 1.0}), row("b", "failed", error="x")])
        store.record([row("a", metrics={"v": 2.0}), row("b", metrics={"v": 3.0}, attempts=2)])
        rows = {r.key: r for r in store.rows()}
        assert rows["a"].metrics == {"v": 1.0}
        assert rows["b"].status == "done" and rows["b"].attempts == 2
        assert store.db.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == 2


def test_a_failed_transaction_leaves_nothing(tmp_path):
    with Store(tmp_path / "r.sqlite", create=True) as store:
        with pytest.raises(ValueError):
            store.record([row("a"), row("b", "weird")])
        assert store.statuses() == {}


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 100,
                                     b"SQLite format 3\x00" + b"\xff" * 4000])
def test_non_databases_are_refused_and_left_alone(tmp_path, content):
    db = tmp_path / "r.sqlite"
    db.write_bytes(content)
    with pytest.raises(BadInput) as error:
        Store(db, create=True, lock=True)
    assert str(db) in str(error.value) and "\n" not in str(error.value)
    assert db.read_bytes() == content


def test_a_truncated_database_is_refused(tmp_path):
    db = tmp_path / "r.sqlite"
    with Store(db, create=True) as store:
        store.record([row(f"k{i}", metrics={"pad": "x" * 2000}) for i in range(50)])
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    content = db.read_bytes()[:len(db.read_bytes()) // 2]
    db.write_bytes(content)
    with pytest.raises(BadInput, match="corrupt"):
        Store(db, create=True)
    assert db.read_bytes() == content


def test_another_programs_database_is_refused_unchanged(tmp_path):
    db = tmp_path / "other.sqlite"
    other = sqlite3.connect(db)
    other.execute("CREATE TABLE cells (key TEXT)")
    other.commit()
    other.close()
    before = db.read_bytes()
    with pytest.raises(BadInput, match="another program"):
        Store(db, create=True, lock=True)
    assert db.read_bytes() == before


def test_missing_database_for_reading(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        Store(tmp_path / "nope.sqlite")
    assert not (tmp_path / "nope.sqlite").exists()


def test_one_driver_per_database(tmp_path):
    db = tmp_path / "r.sqlite"
    with Store(db, create=True, lock=True):
        with pytest.raises(BadInput, match="in use by another bench run"):
            Store(db, create=True, lock=True)
        with Store(db) as reader:  # reading (the report) needs no lock
            assert reader.statuses() == {}
    with Store(db, create=True, lock=True):
        pass


def test_artifacts_are_written_whole(tmp_path):
    with Store(tmp_path / "r.sqlite", create=True) as store:
        folder = store.artifacts / "cells" / "abc"
        leftover = store.artifacts / "cells" / ".abc.123.partial"
        leftover.mkdir(parents=True)
        paths = store.write_files(folder, {"t.bin": b"12"})
        assert paths == ["cells/abc/t.bin"] and (folder / "t.bin").read_bytes() == b"12"
        store.remove_leftovers()
        assert not leftover.exists() and folder.is_dir()
