"""The Django permissions of the recipes app, spelled once: pages, API, admin and the assistant
check these names (recipes.access adds the client roles on top)."""

ADD_RECIPE = "recipes.add_recipe"
CHANGE_RECIPE = "recipes.change_recipe"
ADD_VERSION = "recipes.add_recipeversion"
APPROVE_VERSION = "recipes.approve_recipeversion"  # custom, on RecipeVersion: the firm's Leads
MANAGE_CLIENTS = "recipes.manage_clients"  # custom, on Client: the "Workspace admins" group
