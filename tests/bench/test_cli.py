"""`backdoorguard bench` and `report` on the command line: output, exit codes, errors."""

import json

from backdoorguard.cli import main

from .conftest import write_grid


def call(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_rerun_reports_resume_as_json(tiny_run, capsys):
    code, out, err = call(capsys, "bench", tiny_run["grid"], "--db", tiny_run["db"], "--json")
    summary = json.loads(out)
    assert code == 0 and summary["already_done"] == 20 and summary["ran"] == 0


def test_failed_cells_give_exit_status_1_and_show_in_the_report(tmp_path, capsys):
    grid = write_grid(tmp_path, attacks=["none"], defenses=["none", "double-broken"], seeds=[0])
    db = tmp_path / "r.sqlite"
    code, out, _ = call(capsys, "bench", grid, "--db", db, "--json")
    assert code == 1 and json.loads(out)["failed"] == 1
    code, _, _ = call(capsys, "report", "--db", db, "--out", tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert code == 0 and "Failed cells" in page and "RuntimeError: broken on purpose" in page
    code, out, _ = call(capsys, "report", "--db", db, "--out", "-", "--format", "csv")
    assert code == 0 and out.count("\n") == 3


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    grid = write_grid(tmp_path, defenses=["nope"])
    db = tmp_path / "r.sqlite"
    code, out, err = call(capsys, "bench", grid, "--db", db)
    assert code == 2 and out == "" and err.count("\n") == 1 and "unknown defense 'nope'" in err
    assert not db.exists()

    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"precious data" * 10)
    for argv in (["bench", write_grid(tmp_path, "ok.yaml"), "--db", garbage],
                 ["report", "--db", garbage, "--out", tmp_path / "x.html"]):
        code, _, err = call(capsys, *argv)
        assert code == 2 and "is not an SQLite database" in err and err.count("\n") == 1
    assert garbage.read_bytes() == b"precious data" * 10 and not (tmp_path / "x.html").exists()

    for argv, message in (
            (["report", "--db", tmp_path / "none.sqlite", "--out", "x.html"], "does not exist"),
            (["bench", grid, "--db", db, "--executor", "slurm"], "unknown executor 'slurm'"),
            (["bench", grid, "--db", db, "--workers", "0"], "--workers 0 must be at least 1")):
        code, _, err = call(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1

    ok = write_grid(tmp_path, "ok.yaml")
    for argv, message in ((["--address", "auto"], "--address applies to --executor ray only"),
                          (["--executor", "ray", "--address", "127.0.0.1:1"], "Ray")):
        code, _, err = call(capsys, "bench", ok, "--db", db, *argv)
        assert code == 2 and message in err and err.count("\n") == 1
        assert not db.exists()  # the new, empty database is not left behind


def test_report_checks_format_and_output(tiny_run, tmp_path, capsys):
    code, _, err = call(capsys, "report", "--db", tiny_run["db"], "--out", tmp_path / "r.pdf",
                        "--format", "pdf")
    assert code == 2 and "unknown report format 'pdf'" in err
    code, _, err = call(capsys, "report", "--db", tiny_run["db"], "--out",
                        tmp_path / "missing" / "r.html")
    assert code == 2 and "its folder does not exist" in err
