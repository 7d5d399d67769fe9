"""Which GATv2 head layout should be the default? The specification's recipe (AdamW, cosine
restarts, early stopping on validation MAE, up to 100 epochs) for `concat` (the specification's
own code) and `mean` (96-wide averaged heads, the default), on the same seeds and the embedded
data; each run calibrated and scored on the test split with the realistic weather forecast, as
the bundled model's headline scores. `mean` stays the default only if its test MAE, averaged over seeds, beats
concat's by more than the larger seed-to-seed spread (issue 9, item 4). Prints one JSON object
with a Markdown table for benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/layout_comparison.py [--seeds 0 1 2] [--device cuda] [--out DIR] [--jobs N]

Six runs to convergence take hours on a 2-core CPU; `--epochs 1 --max-batches 2` is a smoke test.
With `--out` the runs are kept, and running the command again carries on from them
(`benchmarks/recipe_runs.py`).
"""

from __future__ import annotations

from benchmarks.recipe_runs import Recipe, comparison


def plan(args, seed: int) -> list[tuple[str, Recipe]]:
    return [(f"`{layout}`", Recipe(f"{layout}-seed{seed}", "sim", seed, ("--specification", "--layout", layout)))
            for layout in ("concat", "mean")]


if __name__ == "__main__":
    comparison("layout_comparison", __doc__, "layout", plan, test_data=lambda args: "sim",
               verdicts=("keep `mean` as the default", "make `concat` the default"))
