"""Runtime admin: read and replace the experiment, rescan the model repository.

Off unless ``BRUM_ADMIN_TOKEN`` is set; every call needs ``Authorization: Bearer <token>``,
compared in constant time. Every change is logged by the engine.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import asdict

from fastapi import APIRouter, Depends, Request

from app.core.engine import Engine
from app.core.errors import BrumError, ErrorKind
from app.core.experiment import Experiment, ExperimentError
from app.transport.schemas import ErrorResponse

logger = logging.getLogger("brum.admin")


class AdminOff(BrumError):
    kind = ErrorKind.NOT_FOUND


class Unauthorized(BrumError):
    kind = ErrorKind.UNAUTHENTICATED


class InvalidExperiment(BrumError):
    kind = ErrorKind.INVALID


def require_admin(request: Request) -> None:
    token = request.app.state.settings.admin_token
    if token is None:
        raise AdminOff("the admin API is off: set BRUM_ADMIN_TOKEN to turn it on")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        logger.warning("admin call refused: bad or missing bearer token")
        raise Unauthorized("a valid 'Authorization: Bearer <BRUM_ADMIN_TOKEN>' header is required")


ERRORS = {
    401: {"model": ErrorResponse, "description": "missing or wrong bearer token"},
    404: {"model": ErrorResponse, "description": "the admin API is off"},
}
router = APIRouter(
    prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)], responses=ERRORS
)


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


@router.get("/experiment", summary="The running experiment (null: all traffic to the default)")
async def get_experiment(request: Request) -> Experiment | None:
    return engine_of(request).experiment


STORE_DOWN = {503: {"model": ErrorResponse, "description": "the shared store is unavailable"}}


@router.put(
    "/experiment",
    summary="Replace the experiment on every replica (arms, weights, shadow); an invalid one "
    "keeps the old",
    responses={422: {"model": ErrorResponse, "description": "invalid experiment"}, **STORE_DOWN},
)
async def put_experiment(request: Request, experiment: Experiment) -> Experiment:
    try:
        await engine_of(request).set_experiment(experiment)
    except ExperimentError as exc:
        raise InvalidExperiment(str(exc)) from None
    return experiment


@router.delete(
    "/experiment",
    summary="End the experiment on every replica: all traffic to the default variant",
    responses=STORE_DOWN,
)
async def delete_experiment(request: Request) -> dict:
    await engine_of(request).set_experiment(None)
    return {"experiment": None, "default": engine_of(request).default_variant}


@router.post(
    "/repository/rescan",
    summary="On every replica: load new variants, replace changed ones (warmed up before they "
    "take traffic), unload removed ones once their queues are empty",
    responses=STORE_DOWN,
)
async def rescan(request: Request) -> dict:
    engine = engine_of(request)
    report = await engine.ask_rescan()
    return {**asdict(report), "variants": sorted(engine.variant_names)}
