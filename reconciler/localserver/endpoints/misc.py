"""Small endpoints the SDK may call at start-up or for models (this server stores no models)."""

from __future__ import annotations

from .. import errors
from ..auth import API_VERSION, SERVER_VERSION
from .common import Call, Doc, Handler


def models_get_all(call: Call) -> Doc:
    return {"models": []}


def models_get_by_id(call: Call) -> Doc:
    raise errors.invalid_model_id(str(call.required("model")))


def current_user(call: Call) -> Doc:
    ident = call.identity
    return {
        "user": {
            "id": ident.user,
            "name": ident.user_name,
            "company": {"id": ident.company, "name": ident.company_name},
            "role": "user",
        },
        "getting_started": {},
    }


def get_vaults(call: Call) -> Doc:
    return {"enabled": False, "data": []}


def server_info(call: Call) -> Doc:
    return {"version": SERVER_VERSION, "build": "", "commit": "", "api_version": API_VERSION, "uid": ""}


def ping(call: Call) -> Doc:
    return {"msg": "ClearML server"}


def supported_modes(call: Call) -> Doc:
    return {
        "authenticated": True,
        "basic": {"enabled": True, "guest": {"enabled": False}},
        "sso": {},
        "sso_providers": [],
    }


ENDPOINTS: dict[str, Handler] = {
    "models.get_all": models_get_all,
    "models.get_all_ex": models_get_all,
    "models.get_by_id": models_get_by_id,
    "users.get_current_user": current_user,
    "users.get_vaults": get_vaults,
    "server.info": server_info,
    "debug.ping": ping,
    "login.supported_modes": supported_modes,
}
