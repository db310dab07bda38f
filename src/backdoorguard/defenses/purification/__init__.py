"""Post-training purification: a possibly backdoored model and a little clean
data in, a cleaner copy out (`Purifier.purify(model, clean) -> Purified`).

    ft    fine-tuning (baseline)              finetune.py
    fp    fine-pruning (baseline)             fine_pruning.py
    nad   attention distillation (baseline)   nad.py
    d3    distance-driven detoxification      d3.py   (ALGORITHMS.md §4)
    sms   skip-connection suppression         sms.py  (ALGORITHMS.md §5)

All run through `core.training.fit`, for classification and regression, with
BatchNorm statistics frozen by default (`common`). `run.purify_step` is the
end-to-end step (purify, evaluate before and after, write the checkpoint and
purify.json) shared by the command line, the demo and the benchmark.
"""

from . import d3, fine_pruning, finetune, nad, sms  # noqa: F401  (registers)
