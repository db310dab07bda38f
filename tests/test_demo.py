import json

from backdoorguard.core.runtime import Runtime
from backdoorguard.demo import run_demo


def test_demo_separates_clean_and_backdoored(tmp_path):
    out = tmp_path / "demo"
    summary = run_demo(out, Runtime(seed=0, device="cpu", threads=1, progress=False), epochs=8)
    clean, backdoored = summary["models"]["clean"], summary["models"]["backdoored"]
    assert clean["clean_acc"] >= 0.9 and backdoored["clean_acc"] >= 0.9
    assert clean["asr"] <= 0.1
    assert backdoored["asr"] >= 0.9
    assert json.loads((out / "demo.json").read_text()) == summary
    assert (out / "examples.png").stat().st_size > 1000
    assert (out / "backdoored" / "model.safetensors").exists()
