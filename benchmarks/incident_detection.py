"""Incident detection on simulated weeks the bundled model never trained on (other simulator
seeds): the model-based alerts (`stmgt.operations.alerts`) against two baselines, a drop below the
historical average and a drop below the persistence forecast by k standard deviations. Every
detector gets the same corroboration, episodes and calibration (its mirror score on the
validation split, for R false alarms per day), so only the per-step evidence differs.

Reported per detector and rate R: the share of incidents alerted at their own road within 2 steps
(30 min) of onset, by severity; the median delay from onset to alert; the false alarms per day
(alerts at a road and time no incident touched), and per rainy vs dry hour (raining, or rain in
the hour before: its slowdown lingers). Then, "matched": each detector's threshold set on the
test weeks themselves to exactly R false alarms per day (an oracle no deployment has), so the
detection rates compare at equal false alarms. Prints (and with --out writes) one JSON object.

    .venv/bin/python benchmarks/incident_detection.py [--quick] [--seeds 1 2] [--weeks 8] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from stmgt.allocator import reuse_freed_memory
from stmgt.data.simulate import SimulationConfig, TrafficSimulator
from stmgt.evaluation.baselines import HistoricalAverage
from stmgt.forecasting.forecast import Forecaster
from stmgt.operations.alerts import (LEADS, corroborate, earliest_step, episodes, neighbour_matrix, surprise,
                                     threshold_for_rate)
from stmgt.paths import BUNDLED_RUN
from stmgt.storage.runs import Run
from stmgt.training.trainer import device_name

WITHIN_STEPS = 2
SEVERITY_BINS = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6)]
STRONG = 0.4
RAIN_MM_H = 0.2
RAIN_LINGER_STEPS = 4


def zscore_evidence(dataset, train: range, forecasts: list[np.ndarray],
                    steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Own scores [T, N] from point forecasts ([all steps, N] each, one per lead): the mean over
    them of the drop below the forecast in units of the road's training-period error sd at that
    lead (the mirror: the rise above it); 0 without a reading."""
    drops = []
    for predicted in forecasts:
        error = dataset.speed - predicted
        sd = np.nanstd(error[train.start:train.stop], axis=0)
        drops.append(-error[steps] / np.where(sd > 0, sd, np.nan)[None])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # a step with no reading at any lead: NaN, then 0
        drop = np.nanmean(np.stack(drops), axis=0)
    return np.nan_to_num(drop), np.nan_to_num(-drop)


def detector_scores(forecaster: Forecaster, val: np.ndarray, test: np.ndarray) -> tuple[dict, float]:
    """{detector: (val mirror [T, N], test lower [T, N])} own scores, before corroboration, and the
    seconds the model took per week of steps scored. The persistence forecast for step t issued h
    steps before is the speed at t − h, for the same leads as the model's; the historical average
    is the same at every lead."""
    dataset = forecaster.dataset
    train = dataset.splits()["train"]
    began = time.perf_counter()
    model_val = surprise(forecaster, int(val[0]), int(val[-1]))
    model_test = surprise(forecaster, int(test[0]), int(test[-1]))
    scoring = time.perf_counter() - began
    out = {"stmgt": (model_val.score(upper=True), model_test.score())}
    average = HistoricalAverage(dataset, train).predict(torch.arange(dataset.num_steps)[None])[0].numpy()
    persistence = [np.vstack([np.full((h, dataset.num_nodes), np.nan), dataset.speed[:-h]]) for h in LEADS]
    for name, forecasts in (("historical_average", [average]), ("persistence", persistence)):
        _, mirror_val = zscore_evidence(dataset, train, forecasts, val)
        lower_test, _ = zscore_evidence(dataset, train, forecasts, test)
        out[name] = (mirror_val, lower_test)
    return out, scoring * 7 * 96 / (len(val) + len(test))


def classify(found, sim: TrafficSimulator, steps: np.ndarray) -> dict:
    """Counts for alerts `found` over test `steps`: false alarms (dry and wet) and, per incident
    starting in the steps, the delay to the first alert at its road (None: none during it)."""
    touched = sim.incidents[steps] < 1.0                                  # [T, N] any incident's slowdown
    rain = sim.weather[:, 2] > RAIN_MM_H
    wet = np.array([rain[max(0, s - RAIN_LINGER_STEPS):s + 1].any() for s in steps])
    false = [e for e in found if not touched[e.start:e.end + 1, e.node].any()]
    wet_false = sum(wet[e.start] for e in false)
    active = np.zeros(touched.shape, bool)
    for e in found:
        active[e.start:e.end + 1, e.node] = True
    incidents = []
    for inc in sim.incident_log:
        if not steps[0] <= inc.start <= steps[-1]:
            continue
        onset = inc.start - steps[0]
        during = np.flatnonzero(active[onset:onset + max(inc.stop - inc.start, 1) + WITHIN_STEPS, inc.node])
        incidents.append((inc.severity, int(during[0]) if len(during) else None))
    return {"alerts": len(found), "false": len(false), "wet_false": int(wet_false),
            "dry_false": len(false) - int(wet_false),
            "days": len(steps) / 96, "wet_hours": wet.sum() / 4, "dry_hours": (~wet).sum() / 4,
            "incidents": incidents}


def summary(parts: list[dict]) -> dict:
    """Pooled figures over seeds."""
    days = sum(p["days"] for p in parts)
    wet_h, dry_h = sum(p["wet_hours"] for p in parts), sum(p["dry_hours"] for p in parts)
    incidents = [i for p in parts for i in p["incidents"]]
    wet = sum(p["wet_false"] for p in parts) / wet_h if wet_h else None
    dry = sum(p["dry_false"] for p in parts) / dry_h if dry_h else None
    by_severity = {}
    for low, high in SEVERITY_BINS:
        hit = [d for s, d in incidents if low <= s < high or (high == SEVERITY_BINS[-1][1] and s == high)]
        by_severity[f"{low:g}-{high:g}"] = {"incidents": len(hit), "alerted_within_2_steps": _share(hit)}
    strong = [d for s, d in incidents if s >= STRONG]
    delays = [d for _, d in incidents if d is not None]
    return {"false_alarms": sum(p["false"] for p in parts), "alerts": sum(p["alerts"] for p in parts),
            "false_alarms_per_day": sum(p["false"] for p in parts) / days,
            "false_alarms_per_wet_hour": wet, "false_alarms_per_dry_hour": dry,
            "wet_to_dry_ratio": wet / dry if wet is not None and dry else None,
            "severity_0.4_plus": {"incidents": len(strong), "alerted_within_2_steps": _share(strong)},
            "by_severity": by_severity,
            "median_delay_steps": float(np.median(delays)) if delays else None,
            "alerted_at_all": len(delays) / len(incidents) if incidents else None}


def _share(delays: list) -> float | None:
    return sum(d is not None and d <= WITHIN_STEPS for d in delays) / len(delays) if delays else None


def matched_threshold(score: np.ndarray, sim, steps: np.ndarray, per_day: float) -> float:
    """The lowest threshold giving at most `per_day` true false alarms per day on these steps."""
    candidates = np.unique(score[score > np.quantile(score, 0.98)])
    lo, hi = 0, len(candidates) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if classify(episodes(score, candidates[mid]), sim, steps)["false"] <= per_day * len(steps) / 96:
            hi = mid
        else:
            lo = mid + 1
    return float(candidates[lo])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, two weeks, one rate")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="simulator seeds (the model trained on 0)")
    parser.add_argument("--weeks", type=float, default=8, help="weeks simulated per seed (val and test are 30 %%)")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="false alarms per day")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.weeks, args.rates = args.seeds[:1], 2, [1.0]
    reuse_freed_memory()
    began = time.perf_counter()
    loaded = None
    parts: dict = {}
    week_seconds = []
    for seed in args.seeds:
        sim = TrafficSimulator(SimulationConfig(seed=seed, weeks=args.weeks))
        dataset = sim.run()
        loaded = loaded or Run.open(BUNDLED_RUN).load(dataset.graph)
        forecaster = Forecaster(loaded, dataset)
        ranges = dataset.splits()
        val = np.arange(max(ranges["val"].start, earliest_step(forecaster)), ranges["val"].stop)
        test = np.arange(ranges["test"].start, dataset.num_steps)
        neighbours = neighbour_matrix(dataset)
        days_val = len(val) / 96
        scores, per_week = detector_scores(forecaster, val, test)
        week_seconds.append(per_week)
        for name, (mirror_val, lower_test) in scores.items():
            calibrating, scored = corroborate(mirror_val, neighbours), corroborate(lower_test, neighbours)
            for rate in args.rates:
                found = episodes(scored, threshold_for_rate(calibrating, days_val, rate))
                parts.setdefault((name, rate, "calibrated"), []).append(classify(found, sim, test))
                matched = matched_threshold(scored, sim, test, rate)
                parts.setdefault((name, rate, "matched"), []).append(classify(episodes(scored, matched), sim, test))
    results = {}
    for (name, rate, kind), counted in parts.items():
        results.setdefault(name, {}).setdefault(f"{rate:g}_per_day", {})[kind] = summary(counted)
    report = {"benchmark": "incident_detection", "seeds": args.seeds, "weeks_per_seed": args.weeks,
              "test_days": sum(p["days"] for p in next(iter(parts.values()))),
              "rain_hours": sum(p["wet_hours"] for p in next(iter(parts.values()))),
              "model_scoring_seconds_per_week": [round(s, 1) for s in week_seconds],
              "rates_per_day": args.rates, "within_steps": WITHIN_STEPS, "results": results,
              "seconds": round(time.perf_counter() - began, 1), "machine": platform.platform(),
              "processor": device_name(torch.device("cpu")),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    text = json.dumps(report, indent=2, default=float)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
