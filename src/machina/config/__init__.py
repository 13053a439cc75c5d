"""Configuration: files (schema), reading them (load) and merging tags (resolve)."""
