"""The FastAPI application: image restoration, video jobs, health and metrics.

    app = create_app(ServerSettings(), RestoreOptions(model="GFPGANv1.4"))

Routes (all errors are `{"error": {"code", "message"}}`; /v1 and /metrics need the bearer token when
one is set):

- `POST /v1/images:restore`: an image (raw body or the `file` part of a form) in, the restored image
  out, same format unless `format` asks otherwise; `X-Faces-Found` header, or `response=json` for the
  faces and the image (base64) as JSON. Options as query or form fields.
- `POST /v1/videos`: upload a video, get a job (202, `Location`) at once; `GET /v1/jobs/{id}` for its
  state and progress; `GET /v1/jobs/{id}/result` downloads the result (Range requests answered);
  `DELETE /v1/jobs/{id}` cancels and removes it.
- `GET /healthz`; `GET /metrics` (Prometheus text).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import secrets
from typing import Annotated, Any, AsyncIterator, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vidrestore import __version__
from vidrestore.pipeline.image_io import encode_image
from vidrestore.pipeline.options import NO_MODEL, RestoreOptions
from vidrestore.pipeline.restorer_api import RestoredImage, Restorer, resized_alpha
from vidrestore.server.errors import (
    ERROR_RESPONSES,
    ApiError,
    ErrorBody,
    install_error_handlers,
    invalid_parameter,
)
from vidrestore.server.images import (
    API_FORMATS,
    FORMATS,
    DecodedImage,
    decode_image,
    media_type,
)
from vidrestore.server.jobs import JobState, new_name
from vidrestore.server.metrics import MetricsMiddleware, ServerMetrics
from vidrestore.server.restorers import SharedRestorer, Variant
from vidrestore.server.settings import ServerSettings
from vidrestore.server.state import ServerState
from vidrestore.server.uploads import Upload, receive_upload
from vidrestore.server.videos import RESULT_TYPES, check_video, result_suffix

log = logging.getLogger(__name__)

P = TypeVar("P", bound=BaseModel)
bearer = HTTPBearer(auto_error=False, description="the server's token, when it was started with one")
CORS_METHODS = ["GET", "POST", "DELETE"]
CORS_EXPOSED = ["X-Faces-Found", "Location", "Content-Range", "Content-Disposition"]
MAX_UPSCALE = 4.0  # a request's output is at most 16 times the pixels of its (already limited) input


# --- request and response models -----------------------------------------------------------------


class RestoreParams(BaseModel):
    """Options of a restoration, as query parameters or form fields (form fields win)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, max_length=200, description="the server's model (default) or `none`")
    blend: float | None = Field(None, ge=0.0, le=1.0, description="fidelity blend: 1 fully restored, 0 original")
    only_center_face: bool | None = Field(None, description="restore only the face nearest the centre")
    upscale: float | None = Field(None, ge=1.0, le=MAX_UPSCALE,
                                  description="output size: this factor times the input's (faces pasted at that size)")
    bg_upsampler: Literal["lanczos", "realesrgan", "none"] | None = Field(
        None, description="background upsampler when upscaling (realesrgan: when the server loaded it)")
    mask: Literal["box", "parse"] | None = Field(
        None, description="paste-back mask: feathered box, or face parsing (when the server loaded a parser)")

    def variant_of(self, restorers: SharedRestorer) -> Variant:
        """The restorer variant these options ask for (400 when the server cannot serve it)."""
        return restorers.variant_for(self.model, self.blend, self.only_center_face, self.upscale,
                                     self.bg_upsampler, self.mask)


class ImageParams(RestoreParams):
    """Options of an image restoration."""

    format: Literal["jpeg", "png", "webp", "bmp", "tiff"] | None = Field(
        None, description="output format (default: the input's)")
    response: Literal["image", "json"] = Field("image", description="`json`: faces and the image (base64) as JSON")


class VideoParams(RestoreParams):
    """Options of a video job."""

    format: Literal["mp4", "mkv", "mov"] | None = Field(
        None, description="result container (default: MP4 for MP4/MOV input, Matroska otherwise)")


class FaceView(BaseModel):
    box: list[float]
    score: float
    landmarks: list[list[float]]


class ImageResult(BaseModel):
    width: int
    height: int
    media_type: str
    faces: list[FaceView]
    image: str = Field(description="the restored image, base64")


class Progress(BaseModel):
    frames_done: int
    frames_total: int | None
    fraction: float | None


class JobView(BaseModel):
    id: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: Progress
    created_at: str
    finished_at: str | None
    frames: int | None
    faces: int | None
    error: dict[str, str] | None
    result: str | None


def upload_body(params: type[BaseModel], media_types: list[str]) -> dict[str, Any]:
    """The OpenAPI request body of an upload route: a multipart form with `file`, or the raw file."""
    fields = params.model_json_schema()["properties"]
    form = {"type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary"}, **fields}}
    raw = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": form},
                                                          **{t: raw for t in media_types}}}}


IMAGE_TYPES = [media for _, media in FORMATS.values()]
IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the restored image (or JSON with `response=json`)",
          "headers": {"X-Faces-Found": {"description": "faces found", "schema": {"type": "integer"}}},
          "content": {**{t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_TYPES},
                      "application/json": {"schema": ImageResult.model_json_schema()}}},
    504: {"model": ErrorBody, "description": "not restored within the request timeout"},
}
JOB_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "unknown job"},
    409: {"model": ErrorBody, "description": "the job has no result (yet)"},
}


# --- helpers -------------------------------------------------------------------------------------


def server_of(request: Request) -> ServerState:
    """The running server's state."""
    return request.app.state.server


def with_fields(params: P, fields: dict[str, str]) -> P:
    """The query options with the form fields laid over them, validated again (422 when invalid)."""
    if not fields:
        return params
    try:
        return type(params).model_validate({**params.model_dump(exclude_unset=True), **fields})
    except ValidationError as exc:
        raise invalid_parameter(exc) from None


def face_json(result: RestoredImage) -> list[dict[str, Any]]:
    """The faces of a result as plain lists."""
    return [{"box": [round(float(v), 2) for v in face.box], "score": round(float(face.score), 4),
             "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks]}
            for face in result.faces]


async def receive_image(server: ServerState, request: Request, params: ImageParams) -> tuple[DecodedImage, ImageParams]:
    """Upload, options and decoded pixels of an image request; the upload file is gone when it returns."""
    settings = server.settings
    path = server.uploads / f"{new_name()}.upload"
    try:
        upload = await receive_upload(request, path, settings.max_image_bytes, settings.upload_timeout_s)
        params = with_fields(params, upload.fields)
        image = await server.in_thread(decode_image, path, settings.max_pixels)
    finally:
        path.unlink(missing_ok=True)
    return image, params


def check_token(settings: ServerSettings, credentials: HTTPAuthorizationCredentials | None) -> None:
    """401 unless the request carries the server's bearer token (no check when there is none)."""
    if settings.token is None:
        return
    given = credentials.credentials.encode() if credentials is not None else b""
    if not secrets.compare_digest(given, settings.token.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})


# --- the application -----------------------------------------------------------------------------


def create_app(settings: ServerSettings, options: RestoreOptions | None = None,
               restorer: Restorer | None = None) -> FastAPI:
    """The API for these settings; the restorer is built from `options` at startup unless one is given."""
    metrics = ServerMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded = restorer if restorer is not None else Restorer(options or RestoreOptions())
        state = ServerState.open(settings, SharedRestorer(loaded), metrics)
        app.state.server = state
        try:
            yield
        finally:
            state.close()

    async def require_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        check_token(settings, credentials)

    app = FastAPI(title="vidrestore", version=__version__, lifespan=lifespan,
                  description="Restore faces in images and videos with GFP-GAN.")
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=CORS_METHODS,
                           allow_headers=["Authorization", "Content-Type", "Range"], expose_headers=CORS_EXPOSED)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], responses=ERROR_RESPONSES)
    _image_routes(v1)
    _video_routes(v1)
    app.include_router(v1)

    @app.get("/healthz", tags=["service"], summary="liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics", dependencies=[Depends(require_token)],
             response_class=Response, responses={200: {"content": {"text/plain": {}}}, **ERROR_RESPONSES})
    async def prometheus(request: Request) -> Response:
        body, content_type = server_of(request).metrics.render()
        return Response(body, media_type=content_type)

    return app


def _image_routes(v1: APIRouter) -> None:
    @v1.post("/images:restore", tags=["images"], summary="restore the faces of an image",
             response_class=Response, responses=IMAGE_RESPONSES,
             openapi_extra=upload_body(ImageParams, [*IMAGE_TYPES, "application/octet-stream"]))
    async def restore_image(request: Request, params: Annotated[ImageParams, Query()]) -> Response:
        server = server_of(request)
        with server.image_slot():
            image, params = await receive_image(server, request, params)
            variant = params.variant_of(server.restorers)
            result = await server.restore(variant, image.rgb)
            fmt = API_FORMATS[params.format] if params.format else image.format
            body = await server.in_thread(encode_image, result.image, resized_alpha(image.alpha, result.image), fmt)
        if variant.model != NO_MODEL:
            server.metrics.faces.labels("image").inc(len(result.faces))
        if params.response == "json":
            height, width = result.image.shape[:2]
            return JSONResponse({"width": width, "height": height, "media_type": media_type(fmt),
                                 "faces": face_json(result), "image": base64.b64encode(body).decode("ascii")})
        return Response(body, media_type=media_type(fmt), headers={"X-Faces-Found": str(len(result.faces))})


def _video_routes(v1: APIRouter) -> None:
    @v1.post("/videos", tags=["videos"], summary="upload a video; its restoration runs as a job",
             status_code=202, response_model=JobView,
             openapi_extra=upload_body(VideoParams, ["application/octet-stream", "video/mp4"]))
    async def create_job(request: Request, params: Annotated[VideoParams, Query()]) -> JSONResponse:
        server = server_of(request)
        settings = server.settings
        job = server.jobs.reserve()
        try:
            upload: Upload = await receive_upload(request, job.input, settings.max_video_bytes,
                                                  settings.upload_timeout_s)
            params = with_fields(params, upload.fields)
            variant = params.variant_of(server.restorers)
            if upload.suffix:
                job.input = job.input.rename(job.folder / f"input{upload.suffix}")
            family, _ = await server.in_thread(check_video, job.input, settings.max_pixels, settings.max_video_seconds)
            job.output = job.folder / f"result.{params.format or result_suffix(family)}"
            job.options = server.restorers.video_options(variant)
            job.restorer = server.restorers.restorer(variant)
        except BaseException:
            server.jobs.release(job)
            raise
        server.jobs.submit(job)
        server.worker.enqueue(job)
        log.info("job %s queued (%d bytes)", job.id, upload.size)
        return JSONResponse(job.to_json(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

    @v1.get("/jobs/{job_id}", tags=["videos"], summary="state and progress of a job", response_model=JobView,
            responses=JOB_RESPONSES)
    async def job_state(request: Request, job_id: str) -> dict[str, Any]:
        return server_of(request).jobs.get(job_id).to_json()

    @v1.get("/jobs/{job_id}/result", tags=["videos"], summary="download the result (Range requests answered)",
            response_class=FileResponse, responses={200: {"content": {t: {} for t in RESULT_TYPES.values()}},
                                                    206: {"description": "partial content"}, **JOB_RESPONSES})
    async def job_result(request: Request, job_id: str) -> FileResponse:
        job = server_of(request).jobs.get(job_id)
        if job.state is not JobState.DONE:
            reason = f": {job.error}" if job.error else ""
            raise ApiError(409, "not_ready",
                           f"job {job.id} is {job.state.value}{reason}; its result comes when it is done")
        if not job.output.is_file():
            raise ApiError(404, "unknown_job", f"the result of job {job.id} has been removed")
        suffix = job.output.suffix.lstrip(".")
        return FileResponse(job.output, media_type=RESULT_TYPES.get(suffix, "application/octet-stream"),
                            filename=f"restored-{job.id}.{suffix}")

    @v1.delete("/jobs/{job_id}", tags=["videos"], summary="cancel a job and remove its files", status_code=204,
               response_class=Response, responses={404: JOB_RESPONSES[404]})
    async def delete_job(request: Request, job_id: str) -> Response:
        server_of(request).jobs.delete(job_id)
        return Response(status_code=204)
