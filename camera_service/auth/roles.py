"""Roles ordered viewer < operator < admin, and what each may do."""

from __future__ import annotations

from enum import IntEnum


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value.strip().upper()]
        except (KeyError, AttributeError):
            raise ValueError(
                f"unknown role {value!r}: expected viewer, operator or admin"
            ) from None


ROLE_NAMES = [role.label for role in Role]

PERMISSIONS: dict[Role, list[str]] = {
    Role.VIEWER: ["view"],
    Role.OPERATOR: ["view", "control"],
    Role.ADMIN: ["view", "control", "admin"],
}


def allows(have: Role | None, required: Role | None) -> bool:
    return required is None or (have is not None and have >= required)
