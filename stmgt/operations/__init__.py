"""Live operations: watching the observations as they arrive against the forecasts made for them
(incident alerts with a calibrated false-alarm rate)."""
