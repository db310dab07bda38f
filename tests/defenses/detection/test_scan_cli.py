"""`scan` and `calibrate` on the command line: exit codes 0/1/2, the files a
report holds, thresholds from a calibration file, nothing written on bad input."""

import json

from backdoorguard.cli import main

FAST = ["--threads", "1", "--seed", "0", "--method", "nc", "--param", "steps=5"]


def test_scan_exit_codes_and_report_files(digits_pair, tmp_path):
    model = str(digits_pair["backdoored"])
    found = tmp_path / "found"
    assert main(["scan", model, "--out", str(found), "--threshold", "-1e9", "--json", *FAST]) == 1
    assert sorted(p.name for p in found.iterdir()) == ["collapse.png", "detection.json",
                                                       "trigger.png"]
    record = json.loads((found / "detection.json").read_text())
    assert record["backdoored"] and record["threshold"] == -1e9
    assert record["threshold_source"]["kind"] == "given" and record["dataset"] == "digits"
    none = tmp_path / "none"
    assert main(["scan", model, "--out", str(none), "--threshold", "1e9", *FAST]) == 0
    assert not json.loads((none / "detection.json").read_text())["backdoored"]


def test_scan_bad_input_exits_2_and_writes_nothing(digits_pair, tmp_path, capsys):
    out = tmp_path / "report"
    cases = [
        ["scan", str(tmp_path / "missing"), "--out", str(out), *FAST],
        ["scan", str(digits_pair["clean"]), "--out", str(out), "--method", "drmguard"],
        ["scan", str(digits_pair["clean"]), "--out", str(out), "--method", "magic"],
        ["scan", str(digits_pair["clean"]), "--out", str(out), *FAST, "--param", "bogus=1"],
        ["scan", str(digits_pair["clean"]), "--out", str(out), *FAST, "--clean-fraction", "2"],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report")]


def test_calibrate_then_scan_with_the_calibration_file(digits_pair, tmp_path):
    thresholds = tmp_path / "thresholds.json"
    assert main(["calibrate", str(digits_pair["clean"]), "--dataset", "digits",
                 "--out", str(thresholds), "--json", *FAST]) == 0
    calibration = json.loads(thresholds.read_text())
    assert calibration["method"] == "nc"
    assert calibration["threshold"] > max(calibration["clean_scores"].values())
    out = tmp_path / "again"
    assert main(["scan", str(digits_pair["clean"]), "--out", str(out), "--calibration",
                 str(thresholds), "--threads", "1", "--seed", "0"]) == 0
    record = json.loads((out / "detection.json").read_text())
    assert record["threshold"] == calibration["threshold"]
    assert record["threshold_source"]["kind"] == "calibration"
    assert record["evidence"]["params"]["steps"] == 5


def test_a_malformed_calibration_file_is_named_precisely(digits_pair, tmp_path, capsys):
    good = {"method": "nc", "threshold": 2.0, "clean_scores": {"a": 1.0}, "rule": "max"}
    cases = [
        ({**good, "threshold": "high"}, "threshold 'high' must be a number"),
        ({k: v for k, v in good.items() if k != "rule"}, "lacks rule"),
        ({**good, "clean_scores": {"a": "low"}}, "clean_scores must map model names to numbers"),
        ([1, 2], "must hold a JSON object"),
    ]
    out = tmp_path / "report"
    for content, message in cases:
        path = tmp_path / "calibration.json"
        path.write_text(json.dumps(content))
        argv = ["scan", str(digits_pair["clean"]), "--out", str(out), "--calibration", str(path),
                *FAST]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not out.exists()
