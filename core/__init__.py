"""Toolkit-wide basics below every other package: the user-error type."""
