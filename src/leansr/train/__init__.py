"""Training: config (YAML + typed overrides), data, the DDP-aware trainer with exact resume, EMA, schedules."""
