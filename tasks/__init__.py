"""Pipeline stages, one thin module per dvc.yaml stage: read params -> call the library -> write artifacts."""
