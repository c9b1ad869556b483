"""peerdistill's recipes (the YAML files of this folder), installed as package data of
peerdistill.recipes (pyproject.toml: package-dir): peerdistill.config.yaml_files.recipes_folder."""
