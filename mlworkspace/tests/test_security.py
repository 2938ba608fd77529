"""Production settings: `check --deploy`, the HTTPS switch, the generated secret key, password
validation, and the Content-Security-Policy as the pages send it (the browser side is
tests/browser/test_csp.py)."""

from __future__ import annotations

import os
import re
import secrets
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client

from mlworkspace.settings import secret_key_file

ROOT = Path(__file__).resolve().parents[2]
HTTPS_WARNINGS = {"security.W004", "security.W008", "security.W012", "security.W016"}


def run_manage(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """manage.py in a fresh process with DEBUG off (settings are read at import)."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEBUG", "HTTPS", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    environ.update(
        {
            "DEBUG": "0",
            "DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "ALLOWED_HOSTS": "workspace.example.com",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def warning_ids(output: str) -> set[str]:
    return set(re.findall(r"\(([\w.]+\.W\d+)\)", output))


def test_check_deploy_is_clean_with_https_on(tmp_path):
    result = run_manage(
        tmp_path,
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        HTTPS="1",
        SECRET_KEY=secrets.token_urlsafe(50),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_with_https_off_lists_only_the_https_settings(tmp_path):
    result = run_manage(tmp_path, "check", "--deploy", HTTPS="0", SECRET_KEY=secrets.token_urlsafe(50))
    assert result.returncode == 0, result.stderr
    assert warning_ids(result.stdout + result.stderr) == HTTPS_WARNINGS


SHOW_SETTINGS = (
    "from django.conf import settings as s; "
    "print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "
    "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.DEBUG)"
)


def test_one_https_setting_switches_on_redirect_hsts_and_secure_cookies(tmp_path):
    key = secrets.token_urlsafe(50)
    on = run_manage(tmp_path, "shell", "--no-imports", "-c", SHOW_SETTINGS, HTTPS="1", SECRET_KEY=key)
    off = run_manage(tmp_path, "shell", "--no-imports", "-c", SHOW_SETTINGS, HTTPS="0", SECRET_KEY=key)
    assert on.stdout.split() == ["True", "31536000", "True", "True", "True", "False"], on.stderr
    assert off.stdout.split() == ["False", "0", "False", "False", "False", "False"], off.stderr


def test_without_secret_key_debug_off_generates_one_key_file_readable_by_its_owner_only(tmp_path):
    show = "from django.conf import settings; print(settings.SECRET_KEY)"
    first = run_manage(tmp_path, "shell", "--no-imports", "-c", show)
    second = run_manage(tmp_path, "shell", "--no-imports", "-c", show)
    key_file = tmp_path / "data" / "secret_key"
    assert first.returncode == 0, first.stderr
    key = first.stdout.strip()
    assert len(key) >= 50 and not key.startswith("dev-insecure")
    assert second.stdout.strip() == key  # generated once, then read
    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # SECRET_KEY in the environment wins and no file is needed.
    other = run_manage(
        tmp_path / "elsewhere",
        "shell",
        "--no-imports",
        "-c",
        show,
        SECRET_KEY="from-the-environment-" + "x" * 40,
    )
    assert other.stdout.strip().startswith("from-the-environment-")
    assert not (tmp_path / "elsewhere" / "data" / "secret_key").exists()


def test_processes_starting_at_once_agree_on_one_key(tmp_path):
    path = tmp_path / "secret_key"
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = set(pool.map(lambda _: secret_key_file(path), range(16)))
    assert len(keys) == 1 and len(keys.pop()) >= 50
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]  # no temporary files left


def test_secret_key_file_keeps_an_existing_key(tmp_path):
    path = tmp_path / "secret_key"
    key = secret_key_file(path)
    assert secret_key_file(path) == key
    path.write_text("kept-key\n")
    assert secret_key_file(path) == "kept-key"


def test_the_test_suite_uses_the_development_key_not_a_key_file():
    """The settings are loaded with DEBUG on (as `make dev`; the test runner then turns DEBUG off
    for the tests themselves), so the tests never read or create data/secret_key."""
    from django.conf import settings

    if not os.environ.get("SECRET_KEY"):
        assert settings.SECRET_KEY == "dev-insecure-change-me"


@pytest.mark.parametrize(
    "password, reason",
    [("short7!", "too short"), ("12345678901", "entirely numeric"), ("password123", "too common")],
)
def test_weak_passwords_are_refused(password, reason):
    with pytest.raises(ValidationError, match=reason):
        validate_password(password)


@pytest.mark.django_db
def test_passwords_like_the_username_are_refused(django_user_model):
    user = django_user_model(username="margaret.hamilton", email="margaret@example.com")
    with pytest.raises(ValidationError, match="too similar"):
        validate_password("margaret.hamilton", user)
    validate_password("a-long-Unusual-passphrase-42", user)


# --- Content-Security-Policy as sent -------------------------------------------------------------

INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
STYLE_ATTRIBUTE = re.compile(r"<[^>]+\sstyle\s*=", re.I)


def policy(response) -> dict[str, list[str]]:
    directives = {}
    for part in response["Content-Security-Policy"].split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def assert_csp_clean(response) -> None:
    directives = policy(response)
    html = response.content.decode()
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]
    assert "'unsafe-eval'" not in response["Content-Security-Policy"]
    nonces = [v for v in directives["script-src"] if v.startswith("'nonce-")]
    assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"]
    # Every inline <script> / <style> carries this response's nonce (JSON data blocks do not run).
    for tag, attrs in re.findall(r"<(script|style)([^>]*)>.*?</\1>", html, re.S):
        if tag == "script" and ("src=" in attrs or 'type="application/json"' in attrs):
            continue
        assert nonces, f"an inline <{tag}> but no nonce in the policy"
        assert f'nonce="{nonces[0][7:-1]}"' in attrs, f"<{tag}{attrs}> without the nonce"
    assert not INLINE_HANDLER.search(html), INLINE_HANDLER.search(html).group(0)
    assert not STYLE_ATTRIBUTE.search(html), STYLE_ATTRIBUTE.search(html).group(0)


@pytest.mark.django_db
def test_pages_send_a_nonce_policy_and_have_no_inline_handlers_or_style_attributes(as_user, baselines):
    assert_csp_clean(Client().get("/accounts/login/"))
    for url in [
        "/model-development/",
        "/model-development/?tab=runs",
        "/model-development/?tab=models",
        "/model-development/?tab=monitoring",
        "/model-development/recipes/recipe_pricing_base",
        "/model-development/datasets",
        "/model-development/chat",
    ]:
        response = as_user.get(url)
        assert response.status_code == 200, url
        assert_csp_clean(response)


@pytest.mark.django_db
def test_each_response_gets_its_own_nonce(as_user, baselines):
    first = policy(as_user.get("/model-development/"))["script-src"]
    second = policy(as_user.get("/model-development/"))["script-src"]
    assert first[0] == second[0] == "'self'"
    assert first[1].startswith("'nonce-") and first[1] != second[1]


@pytest.mark.django_db
def test_swagger_ui_inline_parts_carry_the_nonce(as_user):
    response = as_user.get("/api/docs/")
    assert response.status_code == 200
    assert_csp_clean(response)


@pytest.mark.django_db
def test_browsable_api_allows_style_attributes_only(as_user, baselines):
    response = as_user.get("/api/ml-development/recipes", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    directives = policy(response)
    assert directives["style-src-attr"] == ["'unsafe-inline'"]
    assert "'unsafe-inline'" not in directives["script-src"] + directives["style-src"]
    assert not INLINE_HANDLER.search(response.content.decode())  # DRF's onclick logout replaced
    # JSON keeps the site policy.
    json_policy = policy(as_user.get("/api/ml-development/recipes", HTTP_ACCEPT="application/json"))
    assert "'unsafe-inline'" not in sum(json_policy.values(), [])
