"""The JSON Schemas, shipped inside the package as `harmony_pipes.schemas` (see pyproject.toml).

This folder is the one copy: people and docs read it here, commands read it with
importlib.resources from the installed package (harmony_pipes._core.schemas).
"""
