import pytest

from models_registry.services import model_register


@pytest.fixture
def client_private_model(client_recipe):
    """A model (registered, not trained) of the client-private recipe of the `client_recipe`
    fixture (the project conftest): `.model`, and `.member`, `.outsider`, `.client`, `.recipe`
    as that fixture has them. The outsider, a firm data scientist, must get 404 for it."""
    model = model_register(
        user=client_recipe.admin,
        name="A's model",
        recipe=client_recipe.recipe,
        recipe_version=client_recipe.version,
    )
    client_recipe.model = model
    return client_recipe
