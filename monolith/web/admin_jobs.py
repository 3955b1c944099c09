"""Admin routes for the job queue: list, retry, discard, cancel, trigger a job by name, and
the queues (list, pause, resume).

Every route is admin-only. A job that is running can be neither retried nor discarded (409):
its runner holds it; cancel it, or wait for it to finish or fail. Cancelling a running job
answers 202 with the job still ``running``: its runner tells it to stop within a second.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler

from monolith.db import Transaction
from monolith.errors import UnknownJob
from monolith.jobqueue.base import STATES, Job
from monolith.services import Services
from monolith.web.body import UnprocessableEntity, decode
from monolith.web.guards import admin_guard
from monolith.web.idempotency import write_once

Req = Request[Any, Any, Any]
JobId = Annotated[int, Parameter(ge=1, le=2**62)]
QueueName = Annotated[str, Parameter(min_length=1, max_length=200)]


class EnqueueIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    payload: Any = None
    count: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    delay: Annotated[float, msgspec.Meta(ge=0, le=366 * 86400)] = 0.0
    priority: Annotated[int, msgspec.Meta(ge=-1000, le=1000)] = 0


def routes(svc: Services) -> list[ControllerRouterHandler]:
    admin = [admin_guard(svc)]

    async def held(job_id: int, action: str) -> ClientException:
        """Why ``action`` did nothing: the job does not exist (404) or is running (409)."""
        job = await svc.jobs.queue.get(job_id)
        if job is None:
            return NotFoundException(detail=f"job {job_id} not found")
        return ClientException(
            status_code=409, detail=f"job {job_id} is {job.state}; it cannot be {action} now"
        )

    @get("/api/admin/jobs", guards=admin, summary="Jobs, newest first (admin)")
    async def list_jobs(
        request: Req, limit: Annotated[int, Parameter(ge=1, le=1000)] = 100
    ) -> dict[str, Any]:
        # Read by hand: Litestar reserves the parameter name "state" for its app state.
        job_state = request.query_params.get("state") or None
        if job_state is not None and job_state not in STATES:
            raise UnprocessableEntity(detail=f"state: expected one of {', '.join(STATES)}")
        queue = request.query_params.get("queue") or None
        if queue is not None and len(queue) > 200:
            raise UnprocessableEntity(detail="queue: at most 200 characters")
        jobs = await svc.jobs.queue.list(job_state, limit=limit, queue=queue)
        stats = await svc.jobs.queue.stats()
        return {"jobs": [j.as_dict() for j in jobs], "counts": stats.counts}

    @post("/api/admin/jobs", guards=admin, summary="Enqueue jobs by name (admin)")
    async def enqueue(request: Req) -> dict[str, Any] | Response[bytes]:
        body = await decode(request, EnqueueIn)
        try:
            svc.jobs.registry.get(body.name)
        except UnknownJob as exc:
            raise UnprocessableEntity(detail=f"name: {exc}") from None

        async def write(tx: Transaction) -> dict[str, Any]:
            ids = []
            for _ in range(body.count):
                ids.append(
                    await svc.jobs.enqueue(
                        body.name,
                        body.payload,
                        delay=body.delay,
                        priority=body.priority,
                        tx=tx,
                    )
                )
            return {"ids": ids}

        # With an Idempotency-Key, a retried request enqueues nothing more.
        return await write_once(svc, request, write, status=201)

    @post("/api/admin/jobs/{job_id:int}/retry", guards=admin, status_code=200)
    async def retry(job_id: JobId) -> dict[str, Any]:
        """Run a failed (or waiting) job again now, with fresh attempts."""
        job: Job | None = await svc.jobs.queue.retry(job_id)
        if job is None:
            raise await held(job_id, "retried")
        return job.as_dict()

    @delete("/api/admin/jobs/{job_id:int}", guards=admin, summary="Discard a job (admin)")
    async def discard(job_id: JobId) -> None:
        if await svc.jobs.queue.discard(job_id) is None:
            raise await held(job_id, "discarded")

    @post("/api/admin/jobs/{job_id:int}/cancel", guards=admin, summary="Cancel a job (admin)")
    async def cancel(job_id: JobId) -> Response[dict[str, Any]]:
        """Cancel a queued job (200), or tell a running one to stop (202, still running)."""
        job = await svc.jobs.queue.cancel(job_id)
        if job is None:
            raise await held(job_id, "cancelled")
        return Response(job.as_dict(), status_code=202 if job.state == "running" else 200)

    @get("/api/admin/jobs/queues", guards=admin, summary="Queues, their state and limits (admin)")
    async def queues() -> dict[str, Any]:
        return {"queues": await svc.jobs.queues()}

    async def set_paused(name: str, paused: bool) -> dict[str, Any]:
        await svc.jobs.queue.pause(name, paused)
        [queue] = [q for q in await svc.jobs.queues() if q["name"] == name]
        return dict(queue)

    @post("/api/admin/jobs/queues/{name:str}/pause", guards=admin, status_code=200)
    async def pause(name: QueueName) -> dict[str, Any]:
        """Stop handing out the queue's jobs, on every runner, until resumed."""
        return await set_paused(name, True)

    @post("/api/admin/jobs/queues/{name:str}/resume", guards=admin, status_code=200)
    async def resume(name: QueueName) -> dict[str, Any]:
        """Hand out the queue's jobs again."""
        return await set_paused(name, False)

    return [list_jobs, enqueue, retry, discard, cancel, queues, pause, resume]
