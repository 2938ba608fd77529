"""String primary keys: a type prefix plus a sortable random suffix (a lower-case ULID)."""

from ulid import ULID


def new_id(prefix: str) -> str:
    return f"{prefix}_{str(ULID()).lower()}"
