"""What a user is told when something goes wrong: one clear line and an HTTP status."""

from __future__ import annotations

from core.contract import ContractError, NotGeoTIFF
from client.segmenter import InferenceFailed, TritonUnavailable


DATABASE_UNAVAILABLE = "the results database is unavailable, try again shortly"


def database_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached (refused, dropped, pool exhausted): worth retrying, not a bug."""
    from sqlalchemy.exc import InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    return isinstance(exc, (OperationalError, InterfaceError, PoolTimeout))


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
    if database_unavailable(exc):
        return f"{DATABASE_UNAVAILABLE}; the upload was not stored", 503
    return "internal error while processing the scene; it has been logged", 500
