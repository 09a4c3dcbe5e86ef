"""Parts for serving the real servicers in a test without the rest of a stack.

`FixedGate` admits callers the way `common.callers.TokenGate` does, but with one fixed
user token and one fixed service credential instead of auth_svc's keys, so servicer
tests need no auth_svc. `NotExercised` stands for a handler a test does not use: any use
of it fails the test, so it can never stand in silently.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

import grpc

from common.callers import Caller
from common.errors import Unauthenticated
from common.grpc_metadata import SERVICE_TOKEN_HEADER, bearer_token, metadata_value

T = TypeVar("T")

USER_TOKEN = "good-token"
USER_ID = "user-1"
SERVICE_CREDENTIAL = "service-secret"
USER = (("authorization", f"Bearer {USER_TOKEN}"),)
SERVICE = ((SERVICE_TOKEN_HEADER, SERVICE_CREDENTIAL),)


class FixedGate:
    def __init__(
        self,
        user_token: str = USER_TOKEN,
        user_id: str = USER_ID,
        service_credential: str = SERVICE_CREDENTIAL,
    ) -> None:
        self._user_token = user_token
        self._user_id = user_id
        self._service_credential = service_credential

    async def user_or_service(self, context: grpc.aio.ServicerContext) -> Caller:
        if metadata_value(context, SERVICE_TOKEN_HEADER):
            self.service(context)
            return Caller(user_id=None)
        return Caller(user_id=await self.user(context))

    async def user(self, context: grpc.aio.ServicerContext) -> str:
        if bearer_token(context) != self._user_token:
            raise Unauthenticated("missing or bad access token")
        return self._user_id

    def service(self, context: grpc.aio.ServicerContext) -> None:
        if metadata_value(context, SERVICE_TOKEN_HEADER) != self._service_credential:
            raise Unauthenticated("service credential missing or wrong", reason="SERVICE_TOKEN")


class _NotExercised:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        raise AssertionError(f"{self._name}.{attribute} used by a test that does not exercise it")


def not_exercised(kind: type[T]) -> T:
    """A stand-in of `kind` that fails the test when anything of it is used."""
    return cast(T, _NotExercised(kind.__name__))
