"""The Django permissions of the model registry, spelled once (pages, API)."""

ADD_MODEL = "models_registry.add_mlmodel"  # register a model
CHANGE_MODEL = "models_registry.change_mlmodel"  # move it through its lifecycle
