"""The model zoo: one module per family; `leansr.registry` lists them and their presets."""
