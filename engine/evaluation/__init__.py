"""Evaluation: test-camera metrics, pictures, plots and the HTML report."""
