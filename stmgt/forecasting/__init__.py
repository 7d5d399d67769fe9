"""Forecasting: a loaded model's predictive mixtures for chosen times, weather what-ifs, calibration."""
