"""`tfdist bench`: what tfdist costs, what it gains, where the time goes (measured, never asserted)."""
