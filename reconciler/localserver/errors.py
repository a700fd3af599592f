"""API errors carrying the real clearml-server's result codes and subcodes.

Every error a handler raises is an :class:`ApiError`; the API layer turns it into the standard envelope with
``data: {}``. The factories below reproduce the codes, subcodes and message formats the real server answers
(see the recorded traffic); callers never build codes by hand.
"""

from __future__ import annotations

from collections.abc import Iterable


class ApiError(Exception):
    """An error answer: HTTP status == ``result_code``; ``subcode`` as the real server numbers it."""

    def __init__(self, code: int, subcode: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.subcode = subcode
        self.msg = msg


def _fields(**kwargs: object) -> str:
    return ", ".join(f"{key}={value}" for key, value in kwargs.items())


def missing_credentials() -> ApiError:
    return ApiError(401, 20, "Unauthorized (missing credentials)")


def invalid_token(reason: str) -> ApiError:
    return ApiError(401, 21, f"Unauthorized (invalid token) ({reason})")


def invalid_credentials() -> ApiError:
    return ApiError(401, 22, "Unauthorized (invalid credentials) (failed to locate provided credentials)")


def unknown_endpoint(name: str, version: str) -> ApiError:
    return ApiError(404, 0, f"Unable to find endpoint for name {name} and version {version}")


def malformed_request() -> ApiError:
    return ApiError(400, 0, "The browser (or proxy) sent a request that this server could not understand.")


def validation_error(field: str, problem: str = "field is required!") -> ApiError:
    return ApiError(400, 12, f"Validation error (error for field '{field}'. {problem})")


def data_validation_error(detail: str) -> ApiError:
    return ApiError(400, 800, f"Data validation error: {detail}")


def invalid_task_id(task_ids: Iterable[str]) -> ApiError:
    return ApiError(400, 101, f"Invalid task id: ids=({', '.join(task_ids)})")


def invalid_project_id(project_id: str) -> ApiError:
    return ApiError(400, 401, f"Invalid project id: id={project_id}")


def project_name_exists(name: str, company: str) -> ApiError:
    return ApiError(
        400, 801, "Project with the same name already exists: " + _fields(name=name, company=company)
    )


def project_has_tasks(project_id: str, tasks: int) -> ApiError:
    return ApiError(
        400, 403, "Project has associated tasks (use force=True): " + _fields(id=project_id, tasks=tasks)
    )


def invalid_status_for_edit(status: str) -> ApiError:
    return ApiError(400, 110, "Invalid task status: " + _fields(expected="created", status=status))


def invalid_status_change(current: str, new: str) -> ApiError:
    return ApiError(
        400,
        110,
        "Invalid task status (Invalid status change): " + _fields(current_status=current, new_status=new),
    )


def task_cannot_be_deleted(task_id: str, status: str) -> ApiError:
    return ApiError(
        400,
        123,
        "Task cannot be deleted (due to status, use force=True): "
        + _fields(task=task_id, expected="created", current=status),
    )


def invalid_model_id(model_id: str) -> ApiError:
    return ApiError(400, 201, f"Invalid model id: id={model_id}")
