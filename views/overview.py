"""Overview: the dataset and the model at a glance."""

import pandas as pd
import streamlit as st

from stmgt.data.sources import describe
from stmgt.errors import DataError
from stmgt.evaluation.evaluate import best_baseline_summary, best_baseline_verdicts, missing_baselines
from ui import pages, state
from ui.eval_charts import MODEL_NAMES
from ui.labels import attention_heads, moment, scoring_weather
from ui.maps import SPEED_STOPS, basemap_toggle, legend_html, ramp, road_map, rounded
from ui.text import code, md

st.title("Overview")
dataset = state.require_dataset()

summary = dataset.summary()
st.caption(md(state.dataset_label()))
with st.container(horizontal=True, gap="medium"):          # wraps rather than cutting values at narrow widths
    for label, value in (("Span", f"{summary['days']:.0f} days"), ("Cadence", f"{summary['cadence_min']:g} min"),
                         ("Nodes", summary["nodes"]), ("Road segments", summary["edges"]),
                         ("Missing readings", f"{100 * summary['missing_share']:.2f} %"),
                         ("Mean speed", f"{summary['mean_speed']:.1f} km/h")):
        st.metric(label, value, width="content")
st.caption(f"{summary['start']:%a %d %b %Y %H:%M} → {summary['end']:%a %d %b %Y %H:%M} ({summary['start'].tz})")

with st.container(horizontal=True, gap="large"):    # the model card moves under the map where both do not fit
    with st.container(width=580):
        st.subheader("Current speed")
        latest = dataset.speed[-1]
        nodes = dataset.graph.nodes[["node_id", "name", "road_class"]].assign(speed=rounded(latest, 1))
        basemap = basemap_toggle("overview_basemap")
        deck = road_map(dataset.graph, nodes, ramp(latest, SPEED_STOPS), basemap=basemap,
                        tooltip_html="<b>{name}</b><br/>{node_id} · {road_class}<br/>speed {speed} km/h",
                        size=(580, 460))
        st.pydeck_chart(deck, height=460)
        st.html(legend_html(SPEED_STOPS, f"km/h at {dataset.timestamps[-1]:%a %d %b %H:%M} (grey = no reading)"))
        if not dataset.graph.has_coordinates:
            st.info("This dataset has no node locations: the map shows a layout computed from the graph.")

    with st.container(width=580):                    # as wide as the map: its table shows whole
        st.subheader("Weather")
        if summary["has_weather"]:
            w = summary["weather"]
            st.markdown(
                f"- Temperature **{w['temperature_c'][0]:.1f}–{w['temperature_c'][1]:.1f} °C**\n"
                f"- Wind **{w['wind_kmh'][0]:.0f}–{w['wind_kmh'][1]:.0f} km/h**\n"
                f"- Rain in **{100 * w['rain_share']:.1f} %** of steps, up to **{w['max_precipitation_mm']:.1f} mm/h**")
        else:
            st.info("This dataset has no weather: models train without it and the what-if page is unavailable.")

        st.subheader("Model")
        choice = state.current_model_choice()
        if choice is None:
            st.warning("No model for this dataset yet.")
            pages.link(pages.TRAIN, "Train one on Train & load")
        else:
            try:
                config = choice.run.config
            except DataError as exc:
                st.error(f"The model's run folder is damaged: {md(exc)}")
                st.stop()
            model = config.get("model", {})
            device = config.get("device") or "an unrecorded device"
            name = config.get("device_name") or device
            st.markdown(
                f"**{md(choice.label)}**  \n"
                f"{config.get('parameters', 0):,} parameters · {model.get('num_blocks')} blocks · "
                f"{attention_heads(model)} · weather {'on' if model.get('use_weather') else 'off'}  \n"
                f"Trained on {md(name if name == device else f'{name} ({device})')} "
                f"on {md(describe(config['data'])) if config.get('data') else 'unrecorded data'}, "
                f"{moment(config.get('created'))}  \n"
                f"Forecasts run on **{state.device()}** here.")
            if choice.run.has_metrics:
                metrics = choice.run.metrics()
                minutes = metrics["horizon_minutes"]
                picks = [i for i, m in enumerate(minutes) if m in (15, 60, 180)] or [0, len(minutes) - 1]
                table = pd.DataFrame({MODEL_NAMES.get(k, k): [v["mae"][i] for i in picks]
                                      for k, v in metrics["models"].items()},
                                     index=[f"MAE +{minutes[i]} min" for i in picks]).T
                table["CRPS (all)"] = [v["overall"]["crps"] for v in metrics["models"].values()]
                headers = {c: st.column_config.Column(c.removeprefix("MAE "), help=f"Mean absolute error at "
                                                      f"{c.removeprefix('MAE ')}") for c in table.columns[:-1]}
                headers["CRPS (all)"] = st.column_config.Column("CRPS", help="CRPS over all horizons")
                st.dataframe(table.style.format("{:.2f}"), width="stretch", column_config=headers)  # fits at 800 px
                cover = metrics["models"]["stmgt"]["overall"]["coverage"]["80"]
                st.caption(f"Mean absolute error (MAE) at three horizons and CRPS over all horizons, km/h, lower is "
                           f"better, on the test split "
                           f"({metrics['windows']} windows). The 80 % interval covers "
                           f"{100 * cover:.1f} % of observed speeds. {scoring_weather(metrics)}")
                verdicts = best_baseline_verdicts(metrics)
                st.container(key="overview_verdicts").markdown(
                    f"**{best_baseline_summary(metrics)}** (MAE):\n" + "\n".join(f"- {verdicts[i]}." for i in picks))
                if missing := missing_baselines(metrics):
                    names = ", ".join(MODEL_NAMES[k].lower() for k in missing)
                    st.info(f"These metrics were scored before the {names} baseline existed: **Evaluate now** on "
                            "the Evaluation page scores it too.", icon=":material/info:")
                pages.link(pages.EVALUATION, "Full evaluation")
            else:
                st.info("This run has no saved metrics yet: evaluate it with "
                        f"{code(f'python -m stmgt evaluate --run {choice.run.path}')}.")
