import copy

from recipes import baselines, services


def manifest_for(family: str = "pricing", level: str = "baseline") -> dict:
    manifest = copy.deepcopy(baselines.manifest(family))
    manifest["metadata"]["level"] = level
    return manifest


def make_client(name="Acme", members=None):
    """A client with members {user: role} (through the service)."""
    from recipes import client_services

    client = client_services.client_create(user=None, name=name)
    for member, role in (members or {}).items():
        client_services.membership_set(user=None, client=client, member=member, role=role)
    return client


def make_recipe(
    user,
    *,
    family="pricing",
    level="baseline",
    parent=None,
    name=None,
    tags=None,
    approve_by=None,
    client=None,
):
    if level == "client" and client is None:
        # A client recipe needs a client: one of its own, led by its creator (and by the
        # approver, so set-up approval passes the one access rule).
        members = {m: "lead" for m in (user, approve_by) if m is not None}
        client = make_client(name or f"{family} client", members)
    recipe = services.recipe_create(
        user=user,
        name=name or f"{family} {level} recipe",
        model_family=family,
        level=level,
        parent=parent,
        manifest=manifest_for(family, level),
        tags=tags or [],
        client=client,
    )
    if approve_by is not None:
        # Test set-up approves without evidence runs; the gate itself is tested in test_lineage_api.
        services.version_approve(
            version=recipe.current_version, user=approve_by, override_reason="approved in test set-up"
        )
        recipe.refresh_from_db()
    return recipe
