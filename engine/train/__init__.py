"""Training: the trainer, its setup, schedules, stop signals and long-video fragments."""
