"""Wiring of the inference service: the predictor, the model server client, and the
server bootstrap. No logic here."""

from __future__ import annotations

import grpc

from aifx.inference.v1 import inference_pb2, inference_pb2_grpc
from common.server import HostedService, ServiceSpec, run_service
from common.service_credentials import load_service_token
from common.settings import Settings
from inference.model_client import ModelServerClient
from inference.model_server.flags import configured_models
from inference.predictor import Predictor
from inference.service import InferenceService

SERVICE_NAMES = [inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name]


def build(settings: Settings) -> ServiceSpec:
    backend = ModelServerClient(
        settings.network.effective_model_server_target,
        {model.name: model.base_path for model in configured_models(settings)},
        settings.model.model_server_timeout_seconds,
    )
    servicer = InferenceService(Predictor(backend), load_service_token(settings))

    def register(server: grpc.aio.Server) -> None:
        inference_pb2_grpc.add_InferenceServiceServicer_to_server(servicer, server)

    return ServiceSpec(
        name="inference", register=register, service_names=SERVICE_NAMES, on_stop=[backend.close]
    )


SERVICE = HostedService(
    "inference", build, lambda s: (s.network.inference_port, s.network.inference_metrics_port)
)


def main() -> None:
    run_service(SERVICE)


if __name__ == "__main__":
    main()
