"""Evaluation: the selected model against persistence, the historical average and a linear
autoregression on the test split, accuracy and calibration per horizon. Everything is read from the
run's saved metrics.json."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from stmgt.data.dataset import SEQ_LEN
from stmgt.data.sources import describe
from stmgt.errors import DataError
from stmgt.evaluation.evaluate import BASELINES, best_baseline_summary, best_baseline_verdicts, missing_baselines
from stmgt.evaluation.fidelity import load as load_fidelity
from stmgt.evaluation.fidelity import summary
from stmgt.storage.runs import kept_epoch
from ui import pages, state
from ui.downloads import csv_download
from ui.eval_charts import (METRICS, MODEL_HEADERS, MODEL_NAMES, coverage_figure, fidelity_figure, horizon_figure,
                            pit_figure, reliability_figure, training_figure, width_figure)
from ui.labels import moment, scoring_weather
from ui.layout import flex_columns, metric_columns
from ui.training import evaluate_button
from ui.text import md


def gain(model: float, baseline: float) -> str:
    """How much smaller the model's error is than a baseline's, e.g. '22.1 %' (negative = worse)."""
    return f"{100 * (baseline - model) / baseline:.1f} %"


def headline(metrics: dict) -> None:
    models, minutes = metrics["models"], metrics["horizon_minutes"]
    step = minutes.index(60) if 60 in minutes else len(minutes) - 1
    stmgt, overall = models["stmgt"], models["stmgt"]["overall"]
    baselines = [key for key in BASELINES if key in models]
    cols = metric_columns(3 + len(baselines))
    cols[0].metric(f"MAE at +{minutes[step]} min", f"{stmgt['mae'][step]:.2f} km/h",
                   help="Mean absolute error of the forecast mean at this horizon, over all test windows and nodes.")
    for col, key in zip(cols[1:], baselines):
        base = models[key]["mae"][step]
        col.metric(f"Gain vs {MODEL_NAMES[key].lower()}", gain(stmgt["mae"][step], base),
                   help=f"How much smaller STMGT's MAE at +{minutes[step]} min is than the {MODEL_NAMES[key].lower()} "
                        f"baseline's ({base:.2f} km/h) on the same windows. Negative means worse.")
    cols[-2].metric("80 % interval coverage", f"{100 * overall['coverage']['80']:.1f} %",
                   delta=f"{100 * (overall['coverage']['80'] - 0.8):+.1f} pts vs nominal", delta_color="off",
                   help="Share of observed speeds inside the forecast's central 80 % interval; 80 % is ideal.")
    cols[-1].metric("Calibration error", f"{100 * overall['calibration_error']:.1f} pts",
                   help="Mean absolute gap between observed and nominal coverage over the 50–95 % intervals "
                        "(the reliability diagram's distance from the diagonal). 0 is perfect.")


def per_horizon(metrics: dict) -> None:
    st.subheader("Accuracy by forecast horizon", anchor=False)
    metric = st.segmented_control("Metric", list(METRICS), format_func=lambda m: METRICS[m][0], default="mae",
                                  key="eval_metric", required=True)
    name, unit = METRICS[metric]
    left, right = flex_columns([3, 2], 520, key="eval_horizon_row")
    left.plotly_chart(horizon_figure(metrics, metric), key="eval_horizon")
    models = metrics["models"]
    table = pd.DataFrame({MODEL_NAMES.get(k, k): v[metric] + [v["overall"][metric]] for k, v in models.items()},
                         index=[f"+{m} min" for m in metrics["horizon_minutes"]] + ["All horizons"])
    right.container(key="eval_horizon_table").dataframe(       # may scroll below 1440 px, its horizon pinned
        table, width="stretch", height=35 * (len(table) + 1) + 3,
        column_config={MODEL_NAMES.get(k, k): st.column_config.NumberColumn(
            MODEL_HEADERS.get(k, k), format="%.2f", help=MODEL_NAMES.get(k, k)) for k in models})
    with right:
        csv_download(table.rename_axis("Horizon").reset_index(), f"{metric}_by_horizon.csv", "eval_csv")
    right.caption(f"{name} in {unit}; lower is better. " + (
        "MAPE ignores observed speeds below 1 km/h." if metric == "mape" else
        "The baselines are point forecasts, so their CRPS is their MAE." if metric == "crps" else ""))
    verdicts = "\n".join(f"- {line}." for line in best_baseline_verdicts(metrics))
    st.container(key="eval_verdicts").markdown(f"**{best_baseline_summary(metrics)}** (MAE):\n{verdicts}")


def calibration(metrics: dict) -> None:
    stmgt = metrics["models"]["stmgt"]
    st.subheader("Calibration: are the intervals honest?", anchor=False)
    st.caption("A calibrated forecast's 80 % interval holds 80 % of the observed speeds, at every horizon.")
    left, right = flex_columns(2, 420, key="eval_calibration_row")
    left.plotly_chart(reliability_figure(stmgt), key="eval_reliability")
    right.plotly_chart(coverage_figure(metrics), key="eval_coverage")
    left, right = flex_columns(2, 420, key="eval_sharpness_row")
    left.plotly_chart(pit_figure(stmgt), key="eval_pit")
    left.caption("Flat at 1 when calibrated; a U shape means intervals too narrow, a hump too wide, "
                 "a slope a biased mean.")
    right.plotly_chart(width_figure(metrics), key="eval_width")
    right.caption("Narrower is sharper, as long as the coverage above holds.")


def what_if(result: dict) -> None:
    st.subheader("Weather what-if, checked against the simulator", anchor=False)
    st.caption(f"Scenario: {md(result['scenario'])}, on {result['anchors']} test forecasts. The simulator knows the "
               "true effect of the scenario, so the model's predicted change can be scored.")
    cols = metric_columns(3)
    cols[0].metric("True mean change", f"{result['mean_true_change_kmh']:+.2f} km/h")
    cols[1].metric("Predicted mean change", f"{result['mean_predicted_change_kmh']:+.2f} km/h")
    cols[2].metric("Error of the change (MAE)", f"{result['mae_of_change_kmh']:.2f} km/h",
                   help="Mean absolute error of the predicted change per node and step against the true one.")


def fidelity_section(result: dict) -> None:
    st.subheader("What-if fidelity benchmark", anchor=False)
    st.caption(f"`benchmarks/whatif_fidelity.py` on {result['anchors']} test forecasts, measured "
               f"{moment(result.get('measured'))} ({md(result.get('machine', '?'))}). Change = scenario − "
               "observed-weather forecast median; the true change comes from the simulator re-run under the "
               "scenario's weather. "
               + ("Every target of the benchmark is met." if result["all_targets_met"] else
                  "Not every target is met (see the last column)."))
    table = summary(result)
    st.container(key="eval_fidelity_table").dataframe(table, width="stretch", column_config={
        c: st.column_config.NumberColumn(format="%+.2f" if c.endswith("change (km/h)") else "%.2f")
        for c in table.columns if c != "targets met"})
    name = st.selectbox("Scenario", list(result["scenarios"]), key="eval_fidelity_scenario")
    st.plotly_chart(fidelity_figure(result["scenarios"][name], result["horizon_minutes"]), key="eval_fidelity")


def history(run) -> None:
    frame = run.history()
    if frame.empty:
        return
    st.subheader("Training history", anchor=False)
    st.plotly_chart(training_figure(frame, whatif_weight=run.config.get("train", {}).get("whatif_weight", 0.0)),
                    key="eval_history")
    best = kept_epoch(frame)
    on = {"whatif": "the what-if error", "both": "validation MAE + the what-if error"}.get(
        run.config.get("train", {}).get("select"), "the what-if error")
    chosen = (f", chosen on {on} over validation forecasts (what-if error {best['val_whatif_error']:.2f} km/h; "
              if pd.notna(best.get("val_whatif_error")) else " (")
    st.caption(f"{len(frame)} epoch{'s' if len(frame) != 1 else ''}; the saved checkpoint is epoch {int(best['epoch'])}"
               f"{chosen}validation MAE {best['val_mae']:.2f} km/h).")


st.title("Evaluation")
dataset = state.require_dataset()
choice = state.current_model_choice()
if choice is None:
    st.warning("There is no model for this dataset yet, so there is nothing to evaluate.")
    pages.link(pages.TRAIN, "Train or upload one on Train & load")
    st.stop()

run = choice.run
try:
    metrics = run.metrics() if run.has_metrics else None
except DataError as exc:
    st.error(f"The saved metrics of {md(choice.label)} cannot be read: {md(exc)}. Evaluating again replaces them.")
    metrics = None
if metrics is None:
    if not run.has_metrics:
        st.info(f"**{md(choice.label)}** has no saved test metrics yet. Evaluating scores it and the three "
                f"baselines on the test split of {md(state.dataset_label())} and saves the result with the model.",
                icon=":material/info:")
    evaluate_button(run, dataset, state.current_dataset_spec(), state.device(), key="eval_now")
    history(run)
    st.stop()

data = describe(metrics["data"]) if metrics.get("data") else state.dataset_label()
st.caption(f"**{md(choice.label)}** · test split of {md(data)}: {metrics['windows']:,} forecast windows, "
           f"horizons +{metrics['horizon_minutes'][0]}…+{metrics['horizon_minutes'][-1]} min · "
           f"evaluated {moment(metrics.get('evaluated'))}. Baselines: persistence (the last observed speed), "
           "the historical average for the time of week (else the time of day) and a linear autoregression per "
           f"node (ridge on its last {SEQ_LEN} speeds, its upstream neighbours' last speeds and "
           "the time of day, fitted on the training split). " + scoring_weather(metrics))
if missing := missing_baselines(metrics):
    st.info(f"These metrics were scored before the {', '.join(MODEL_NAMES[k].lower() for k in missing)} baseline "
            "existed, so STMGT stands beside the baselines they hold. Evaluating again scores all three.",
            icon=":material/info:")
    evaluate_button(run, dataset, state.current_dataset_spec(), state.device(), key="eval_again")
headline(metrics)
per_horizon(metrics)
calibration(metrics)
if metrics.get("what_if"):
    what_if(metrics["what_if"])
try:
    fidelity_result = load_fidelity(run.path)
except DataError as exc:
    st.warning(f"The saved what-if fidelity result cannot be read: {md(exc)}. "
               "Run `benchmarks/whatif_fidelity.py` again.")
    fidelity_result = None
if fidelity_result:
    fidelity_section(fidelity_result)
history(run)
