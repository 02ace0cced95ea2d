"""What a user is told when something goes wrong: one clear line and an HTTP status."""

from __future__ import annotations

from client.contract import ContractError, NotGeoTIFF
from client.segmenter import InferenceFailed, TritonUnavailable


class UploadError(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message = message
        self.status = status


def user_error(exc: BaseException) -> tuple[str, int]:
    """(message, status) for an error met while answering an upload."""
    if isinstance(exc, UploadError):
        return exc.message, exc.status
    if isinstance(exc, NotGeoTIFF):
        return str(exc), 415
    if isinstance(exc, ContractError):
        return str(exc), 422
    if isinstance(exc, TritonUnavailable):
        return f"the model server is unavailable, try again shortly ({exc})", 503
    if isinstance(exc, InferenceFailed):
        return str(exc), 502
    return "internal error while processing the scene; it has been logged", 500
