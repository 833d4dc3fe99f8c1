"""Sub-commands of the `leansr` CLI, one module each."""
