"""Session presets: schema, loading and validation, problems, CC/bank controls, writing, the live state."""
