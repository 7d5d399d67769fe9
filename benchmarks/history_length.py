"""Does more simulated history make a better model? The specification's recipe (AdamW, cosine
restarts, early stopping on validation MAE, up to 100 epochs) from scratch on 8 and on 26 weeks
of the embedded simulator (seed 0: the same city, the same roads and daily patterns), on the same
training seeds (issue 10, item 7). Every run is calibrated and scored on the same windows: the
test split of the longest history, which no run trained or was validated on (the 8-week
simulation shares random draws with the first weeks of the 26-week one, never with its test
weeks). More history wins only if its test MAE, averaged over seeds, beats the shorter one's by
more than the larger seed-to-seed spread. Prints one JSON object with a Markdown table for
benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/history_length.py [--weeks 8 26] [--seeds 0 1 2] [--device cuda] [--out DIR]
        [--jobs N] [--so-far]

One 8-week run to convergence took 42 min on the 2-core development CPU (20 epochs); a 26-week
one takes 7 min an epoch there and was still improving at epoch 17. `--epochs 1 --max-batches 2`
is a smoke test. With `--out` the runs are kept, and running the command again carries on from
them (`benchmarks/recipe_runs.py`): a CPU can finish the comparison over several sittings.
"""

from __future__ import annotations

from benchmarks.recipe_runs import Recipe, comparison


def history(weeks: int) -> str:
    return f"sim:seed=0,weeks={weeks}"


def plan(args, seed: int) -> list[tuple[str, Recipe]]:
    return [(f"{weeks} weeks", Recipe(f"{weeks}w-seed{seed}", history(weeks), seed, ("--specification",)))
            for weeks in sorted(set(args.weeks))]


def weeks_option(parser) -> None:
    parser.add_argument("--weeks", type=int, nargs=2, default=[8, 26], metavar=("SHORTER", "LONGER"),
                        help="the two history lengths compared (default 8 and 26)")


if __name__ == "__main__":
    comparison("history_length", __doc__, "history", plan, test_data=lambda args: history(max(args.weeks)),
               verdicts=("train on the longer history", "the shorter history is enough"),
               more_options=weeks_option)
