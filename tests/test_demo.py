import json

from backdoorguard.core.runtime import Runtime
from backdoorguard.demo import PURIFIER, run_demo


def test_demo_separates_scans_and_purifies(tmp_path):
    out = tmp_path / "demo"
    summary = run_demo(out, Runtime(seed=0, device="cpu", threads=1, progress=False), epochs=8)
    models = summary["models"]
    clean, backdoored = models["clean"], models["backdoored"]
    purified = models[f"purified ({PURIFIER})"]
    assert clean["clean_acc"] >= 0.9 and backdoored["clean_acc"] >= 0.9
    assert clean["asr"] <= 0.1
    assert backdoored["asr"] >= 0.9
    # is it backdoored? the default detector tells the two apart
    assert summary["scan"]["backdoored"]["backdoored"] is True
    assert summary["scan"]["clean"]["backdoored"] is False
    # give me a clean model: the purified one keeps its accuracy and loses the backdoor
    assert purified["asr"] <= 0.5 and purified["clean_acc"] >= backdoored["clean_acc"] - 0.05
    assert json.loads((out / "demo.json").read_text()) == summary
    assert (out / "examples.png").stat().st_size > 1000
    for name in ("backdoored", "purified"):
        assert (out / name / "model.safetensors").exists()
    assert json.loads((out / "scan" / "backdoored" / "detection.json").read_text())["backdoored"]
    assert (out / "purified" / "purify.json").exists()
