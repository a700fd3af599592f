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


def malformed_request(detail: str | None = None) -> ApiError:
    """400/0, as the real server answers a body it cannot parse (``detail`` replaces the generic text)."""
    return ApiError(
        400, 0, detail or "The browser (or proxy) sent a request that this server could not understand."
    )


def body_too_large(size: int, limit: int) -> ApiError:
    return ApiError(413, 0, f"Request body too large: {size} bytes (the limit is {limit})")


def validation_error(field: str, problem: str = "field is required!") -> ApiError:
    return ApiError(400, 12, f"Validation error (error for field '{field}'. {problem})")


def wrong_type(field: str, expected: str, value: object) -> ApiError:
    """400/12 for a field of the wrong JSON type, in the real server's words (a Python tuple repr)."""
    detail = (f'value is wrong, expected type "{expected}"', value)
    return ApiError(400, 12, f"Validation error (error for field '{field}': {detail!r}.)")


def list_too_short(field: str, value: object) -> ApiError:
    detail = f"value '{value}' length is lower than allowed minimum '1'."
    return ApiError(400, 12, f"Validation error (error for field '{field}': {detail}.)")


def item_field_required(field: str, item_field: str) -> ApiError:
    detail = f"(\"error for field '{item_field}'.\", validationerror('field is required!'))"
    return ApiError(400, 12, f"Validation error (error for field '{field}': {detail}.)")


def not_a_choice(field: str, value: object) -> ApiError:
    return ApiError(400, 12, f"Validation error (error for field '{field}': value '{value}' is not a valid choice..)")


def fields_conflict(detail: str) -> ApiError:
    return ApiError(400, 15, f"Conflicting fields ({detail})")


def invalid_field_value(expecting: str, **fields: object) -> ApiError:
    return ApiError(400, 16, f"Invalid value for fields (expecting {expecting}): " + _fields(**fields))


def batch_contains_no_items() -> ApiError:
    return ApiError(400, 17, "Batch request contains no items")


def malformed_regex(problem: str) -> ApiError:
    return ApiError(400, 21, f"Malformed regular expression: err={problem}, extra_info=None")


def data_validation_error(detail: str) -> ApiError:
    return ApiError(400, 800, f"Data validation error: {detail}")


def invalid_task_id(task_ids: Iterable[str]) -> ApiError:
    """400/101 of the reading endpoints (``tasks.get_by_id``, ``tasks.archive``...)."""
    return ApiError(400, 101, f"Invalid task id: ids=({', '.join(task_ids)})")


def invalid_task_id_for_write(task_id: str, company: str) -> ApiError:
    """400/101 of the endpoints that change one task (``tasks.edit``, status changes, ``tasks.delete``...)."""
    return ApiError(400, 101, "Invalid task id: " + _fields(id=task_id, company=company))


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


def invalid_status_for_reset(task_id: str, status: str) -> ApiError:
    return ApiError(400, 110, "Invalid task status: " + _fields(task_id=task_id, status=status))


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


def events_not_added(reasons: dict[str, int]) -> ApiError:
    return ApiError(400, 131, "Events not added: " + ", ".join(f"{k}={v}" for k, v in reasons.items()))


def invalid_model_id(model_id: str) -> ApiError:
    return ApiError(400, 201, f"Invalid model id: id={model_id}")


def invalid_queue_id(**fields: object) -> ApiError:
    return ApiError(400, 701, "Invalid queue id: " + _fields(**fields))


def queue_not_empty(queue_id: str) -> ApiError:
    return ApiError(400, 702, "Queue is not empty (use force=true to delete): " + _fields(id=queue_id))


def task_not_in_queue(task_id: str, queue_id: str, company: str) -> ApiError:
    return ApiError(400, 703, "Invalid queue id or task not in queue: " + _fields(task=task_id, id=queue_id,
                                                                                  company=company))


def task_already_queued(task_id: str) -> ApiError:
    return ApiError(400, 706, "Failed adding task to queue since task is already queued: " + _fields(task=task_id))


def no_default_queue() -> ApiError:
    return ApiError(400, 707, "No queue is tagged as the default queue for this company")


def duplicate_unique_value() -> ApiError:
    """400/801 as the reference server words a second queue of the same name."""
    return ApiError(400, 801, "Value combination already exists (unique field already contains this value): "
                    "err=Tried to save duplicate unique keys (E11000 Duplicate Key Error)")


def worker_registration_failed(problem: str, **fields: object) -> ApiError:
    return ApiError(400, 1002, f"Worker registration failed ({problem}): " + _fields(**fields))
