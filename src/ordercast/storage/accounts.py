"""SQL for accounts (table ``accounts``, migration 0006)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ordercast.domain.accounts import Account
from ordercast.errors import Conflict
from ordercast.storage import schema as s

A = s.accounts


def _account(row: Any) -> Account:
    return Account(
        id=row.id,
        tenant_id=row.tenant_id,
        username=row.username,
        password_hash=row.password_hash,
        roles=frozenset(row.roles or ()),
        created_at=row.created_at,
        location_ids=frozenset(row.location_ids or ()),
        disabled=bool(row.disabled),
    )


class SqlAccounts:
    """``ports.Accounts`` on a SQL store (build it with ``store.accounts()``)."""

    def __init__(
        self,
        engine: AsyncEngine,
        write: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
    ) -> None:
        self.engine = engine
        self.write = write  # the store's write transactions on the engine

    async def create(self, account: Account) -> None:
        try:
            async with self.write() as conn:
                await conn.execute(
                    A.insert().values(
                        id=account.id,
                        tenant_id=account.tenant_id,
                        username=account.username,
                        password_hash=account.password_hash,
                        roles=sorted(account.roles),
                        location_ids=sorted(account.location_ids),
                        disabled=account.disabled,
                        created_at=account.created_at,
                    )
                )
        except IntegrityError as exc:
            raise Conflict(
                f"tenant {account.tenant_id} already has an account '{account.username}'"
            ) from exc

    async def get(self, account_id: str) -> Account | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(A).where(A.c.id == account_id))).first()
        return _account(row) if row else None

    async def by_username(self, tenant_id: str, username: str) -> Account | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(A).where(A.c.tenant_id == tenant_id, A.c.username == username)
                )
            ).first()
        return _account(row) if row else None

    async def list(self, tenant_id: str) -> list[Account]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(A).where(A.c.tenant_id == tenant_id).order_by(A.c.username)
                )
            ).all()
        return [_account(r) for r in rows]

    async def update(self, account: Account) -> None:
        async with self.write() as conn:
            await conn.execute(
                A.update()
                .where(A.c.id == account.id)
                .values(
                    password_hash=account.password_hash,
                    roles=sorted(account.roles),
                    location_ids=sorted(account.location_ids),
                    disabled=account.disabled,
                )
            )

    async def set_password_hash(self, account_id: str, password_hash: str) -> None:
        async with self.write() as conn:
            await conn.execute(
                A.update().where(A.c.id == account_id).values(password_hash=password_hash)
            )
