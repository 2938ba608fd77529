import pytest


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """A SQLite test database file of this pytest process's own (a file, not :memory:, so the
    worker subprocesses that tests start can open it; per process, so concurrent test runs
    on one machine never recreate each other's database). On PostgreSQL, pytest-django's own
    suffix (the fixture this one extends) gives each pytest-xdist process its own test
    database: test_<name>_gw0, test_<name>_gw1."""
    import os
    import tempfile
    from pathlib import Path

    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        name = Path(tempfile.gettempdir()) / f"mlworkspace-test-{os.getpid()}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{name}{suffix}").unlink(missing_ok=True)
        db.setdefault("TEST", {})["NAME"] = str(name)


# pytest-django's fixtures that open the test database (a test's fixture names are the whole
# closure, so a fixture that needs one of these through another is seen too).
DATABASE_FIXTURES = {
    "db",
    "transactional_db",
    "django_db_reset_sequences",
    "django_db_serialized_rollback",
    "live_server",
}


@pytest.hookimpl(tryfirst=True)  # before -m selects on the marks
def pytest_collection_modifyitems(config, items):
    """A test that opens no database cannot depend on which database it runs on: it is marked
    `once`, so CI runs it in the PostgreSQL pass only (`.ci/run`: TEST_MARKS='not once' on
    SQLite). `make test` on its own still runs every test."""
    for item in items:
        uses_database = item.get_closest_marker("django_db") is not None or bool(
            DATABASE_FIXTURES & set(getattr(item, "fixturenames", ()))
        )
        if not uses_database:
            item.add_marker(pytest.mark.once)


def _client(user=None):
    from rest_framework.test import APIClient

    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def _users():
    from django.contrib.auth import get_user_model

    return get_user_model().objects


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """Test users' passwords are hashed with MD5 (PBKDF2's ~1.2M rounds cost ~0.35 s a user or
    a login, minutes over the suite); PBKDF2 stays second so a stored hash can still be checked."""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]


@pytest.fixture(autouse=True)
def _media(settings, tmp_path_factory):
    """Every test writes artifacts and uploads to its own MEDIA_ROOT and local scratch folder
    (outside its tmp_path)."""
    settings.MEDIA_ROOT = tmp_path_factory.mktemp("media")
    settings.WORK_DIR = tmp_path_factory.mktemp("work")


# Small data in tests: every model the suite trains runs the baselines' explain stage, and every
# check of it explains a sample of its batch; the sizes below keep that to a fraction of a second
# (the explanations' quality at the real sizes is tested in runs/tests/test_explain.py, which calls
# runs.explain directly, and measured in bench/bench_explain.py).
TEST_EXPLAIN_CAPS = {"sample_size": 100, "background_size": 4, "repeats": 2, "top_features": 3, "ice_rows": 5}


@pytest.fixture(autouse=True)
def _small_explanations(settings):
    settings.EXPLAIN_CAPS = TEST_EXPLAIN_CAPS
    settings.CHECK_EXPLAIN_FIRST_ROWS = 5
    settings.CHECK_EXPLAIN_SECONDS = 0.0


@pytest.fixture
def groups(db):
    from workspace.groups import ensure_groups

    return ensure_groups()


@pytest.fixture
def user(groups):
    user = _users().create_user("scientist", password="pw-scientist-1")
    user.groups.add(groups["Data scientists"])
    return user


@pytest.fixture
def lead(groups):
    lead = _users().create_user("lead", password="pw-lead-1")
    lead.groups.add(groups["Leads"])
    return lead


@pytest.fixture
def viewer(db):
    """Signed in, but with no write permission."""
    return _users().create_user("viewer", password="pw-viewer-1")


@pytest.fixture
def api_client(user):
    return _client(user)


@pytest.fixture
def lead_client(lead):
    return _client(lead)


@pytest.fixture
def viewer_client(viewer):
    return _client(viewer)


@pytest.fixture
def anon_client():
    return _client()


@pytest.fixture
def baselines(db):
    from django.core.management import call_command

    call_command("loaddata", "baseline_recipes", verbosity=0)


@pytest.fixture
def client_recipe(baselines, user):
    """An approved recipe private to "Client A" (cloned from the pricing baseline through an
    industry recipe), and `member`, a data scientist of that client. `outsider` is the `user`
    fixture: a firm data scientist with every firm permission but no member of the client,
    for whom the recipe and everything under it must not exist (404)."""
    from types import SimpleNamespace

    from recipes.models import Recipe
    from recipes.services import recipe_clone, version_approve
    from recipes.tests.factories import make_client

    admin = _users().create_superuser("root", password="pw-root-1")
    member = _users().create_user("member", password="pw-member-1")
    client = make_client("Client A", {member: "data_scientist"})
    industry = recipe_clone(
        source=Recipe.objects.get(pk="recipe_pricing_base"), user=admin, name="Grocery pricing"
    )
    recipe = recipe_clone(source=industry, user=admin, name="A pricing", client=client)
    version = version_approve(version=recipe.current_version, user=admin, override_reason="test set-up")
    recipe.refresh_from_db()
    return SimpleNamespace(
        recipe=recipe, version=version, client=client, admin=admin, member=member, outsider=user
    )


# Page tests: the Django test client, signed in.
@pytest.fixture
def as_user(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def as_lead(client, lead):
    client.force_login(lead)
    return client


@pytest.fixture
def as_viewer(client, viewer):
    client.force_login(viewer)
    return client


# --------------------------------------------------------------------------- object storage

S3_KEYS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_S3_REGION_NAME": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (moto in server mode, its own process) on a free loopback
    port, for this pytest process's tests; yields its endpoint URL."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(tmp_path_factory.mktemp("s3") / "moto.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"the S3 test server did not start (see {log.name})") from None
            time.sleep(0.1)
    yield endpoint
    process.terminate()
    process.wait(10)
    log.close()


def use_s3(settings, endpoint: str) -> dict:
    """Point the workspace's file store at a fresh bucket on the S3 server at `endpoint` (the
    settings django-storages reads, as AWS_STORAGE_BUCKET_NAME in the environment sets them);
    returns {"bucket", "client" (boto3), "env" (what a worker subprocess needs for the same
    store)}. A function as well as the fixture, for a test that first writes files to the
    local store and only then switches (the migrate_storage tests)."""
    import uuid

    import boto3

    bucket = f"test-{uuid.uuid4().hex[:16]}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **_boto_keys())
    client.create_bucket(Bucket=bucket)
    settings.AWS_STORAGE_BUCKET_NAME = bucket
    settings.AWS_S3_ENDPOINT_URL = endpoint
    settings.AWS_S3_ACCESS_KEY_ID = S3_KEYS["AWS_ACCESS_KEY_ID"]
    settings.AWS_S3_SECRET_ACCESS_KEY = S3_KEYS["AWS_SECRET_ACCESS_KEY"]
    settings.AWS_S3_REGION_NAME = S3_KEYS["AWS_S3_REGION_NAME"]
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage"}}
    return {
        "bucket": bucket,
        "client": client,
        "env": {"AWS_STORAGE_BUCKET_NAME": bucket, "AWS_S3_ENDPOINT_URL": endpoint, **S3_KEYS},
    }


@pytest.fixture
def s3_storage(s3_server, settings):
    """The workspace's file store is a fresh bucket on the S3 test server for this test
    (use_s3). Yields {"bucket", "client", "env"}."""
    yield use_s3(settings, s3_server)


def _boto_keys() -> dict:
    return {
        "aws_access_key_id": S3_KEYS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_KEYS["AWS_SECRET_ACCESS_KEY"],
    }
