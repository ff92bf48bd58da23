"""Orchestration: training loop, checkpoints, evaluation, command-line plumbing."""
