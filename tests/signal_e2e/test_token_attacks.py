"""Forged and misused access tokens (tests/token_forgery.py), each refused at Envoy
(REST) and at the service (gRPC straight to signal_svc, past Envoy); at the edge's
Socket.IO: tests/security/test_access_control.py. Revoked tokens:
`test_signal_rest.py::test_a_revoked_token_is_refused_by_signal_svc` and the edge's and
auth's suites."""

from __future__ import annotations

import grpc
import httpx
import pytest

from aifx.signal.v1 import signal_pb2
from auth_svc.signing_keys import load_signing_key
from tests.signal_e2e.conftest import SignalEdge
from tests.token_forgery import ATTACKS

pytestmark = pytest.mark.e2e

SIGNAL_PATH = "/api/v1/trading/signal/EURUSD"


@pytest.mark.parametrize("attack", ATTACKS)
async def test_refused_at_envoy(signal_edge: SignalEdge, http: httpx.AsyncClient, attack: str):
    key = load_signing_key(signal_edge.settings)
    token = ATTACKS[attack](signal_edge.settings.tokens, key, signal_edge.access_token)
    response = await http.get(SIGNAL_PATH, headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.json()["code"] == 16


@pytest.mark.parametrize("attack", ATTACKS)
async def test_refused_at_the_service(signal_edge: SignalEdge, attack: str):
    key = load_signing_key(signal_edge.settings)
    token = ATTACKS[attack](signal_edge.settings.tokens, key, signal_edge.access_token)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await signal_edge.stub.GetSignal(
            signal_pb2.GetSignalRequest(pair="EUR/USD"),
            metadata=(("authorization", f"Bearer {token}"),),
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, caught.value


async def test_the_real_token_passes_both(signal_edge: SignalEdge, http: httpx.AsyncClient):
    """The control: the same requests with the real token are served."""
    response = await http.get(SIGNAL_PATH, headers=dict(signal_edge.bearer))
    assert response.status_code == 200, response.text
    await signal_edge.stub.GetSignal(
        signal_pb2.GetSignalRequest(pair="EUR/USD"), metadata=signal_edge.bearer
    )
