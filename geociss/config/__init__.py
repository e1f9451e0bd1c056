"""Configuration models and loading (YAML + pydantic)."""
