"""The error a sandbox method raises: answered as ``{"error", "error_description"}``."""

from __future__ import annotations


class RestError(Exception):
    def __init__(self, status: int, code: str, description: str, *, reset_at: float | None = None) -> None:
        super().__init__(f"{status} {code}: {description}")
        self.status = status
        self.code = code
        self.description = description
        self.reset_at = reset_at  # OPERATION_TIME_LIMIT: when the method works again

    def body(self) -> dict:
        return {"error": self.code, "error_description": self.description}
