"""Evaluation: scores per horizon beside the baselines, and what-if fidelity against the simulator."""
