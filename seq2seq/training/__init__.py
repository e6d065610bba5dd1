"""The shared trainer, its task protocol, schedules, runtime and checkpoints."""
