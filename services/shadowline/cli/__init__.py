"""The `shadowline` console script."""
