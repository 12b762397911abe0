"""Schemathesis hooks for scripts/schemathesis: data only a live server can make valid.

Random data that fits the schema cannot be a wx.login() code WeChat issued, ciphertext under this
session's session_key, or the id of a user that exists. So the positive cases generated for those
operations are given such data, fetched from the built-in simulator (or made with the run's own
session_key) just before they are sent; negative cases go as generated. That way every operation
is seen answering 2xx, and its rejections are still tested.
"""

import hashlib
import itertools
import json
import os
import struct
import time
import urllib.request
import zlib

import schemathesis
from schemathesis.generation.modes import GenerationMode

BASE = os.environ["WXLOGIN_ST_BASE"]
ADMIN = os.environ.get("WXLOGIN_ST_ADMIN", "")
USER = os.environ.get("WXLOGIN_ST_USER", "schemathesis")
SESSION_KEY = os.environ.get("WXLOGIN_ST_SESSION_KEY", "")
AVATAR = os.environ.get("WXLOGIN_ST_AVATAR", "")

_serial = itertools.count(1)


def _call(method, path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = "Bearer " + token
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, method=method, data=data, headers=headers)
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def _sim_app(appid):
    """Registers a QQ app with the simulated QQ (204, no body)."""
    body = json.dumps({"platform": "qq", "appid": appid, "secret": "st-secret"}).encode()
    req = urllib.request.Request(BASE + "/_sim/apps", method="POST", data=body,
                                 headers={"content-type": "application/json"})
    urllib.request.urlopen(req).close()


def _fresh_user():
    """A new user (logged in once through the simulator): its id and token."""
    wx = _call("POST", "/_sim/codes", {"user": f"st-fresh-{next(_serial)}"})
    data = _call("POST", "/login", {"code": wx["code"]})["data"]
    return data["user"]["id"], data["token"]


def _png():
    """A 1×1 PNG, whole (signature, IHDR, IDAT, IEND with their CRCs)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@schemathesis.hook
def before_call(context, case, kwargs):
    meta = case.meta
    if meta is None:
        return
    if f"{case.method.upper()} {case.path}" == "GET /admin/apps/{appid}/access_token":
        # An app the platform knows, whatever else the case varies (another app's credentials,
        # which a stateful PUT may have changed, are rightly 503); a negative appid stays.
        path_negative = any(
            component.mode.is_negative
            for kind, component in meta.components.items()
            if "path" in str(kind).lower()
        )
        if not path_negative:
            case.path_parameters = {"appid": "wxdevapp"}
    if meta.generation.mode != GenerationMode.POSITIVE:
        return
    if any(component.mode.is_negative for component in meta.components.values()):
        return
    op = f"{case.method.upper()} {case.path}"
    if op == "POST /login":
        wx = _call("POST", "/_sim/codes", {"user": f"st-login-{next(_serial)}"})
        case.body = {"code": wx["code"]}
    elif op == "POST /phone":
        phone = f"139{next(_serial):08d}"
        case.body = {"code": _call("POST", "/_sim/phone_codes", {"phone": phone})["code"]}
    elif op == "POST /decrypt":
        sealed = _call("POST", "/_sim/encrypt", {"user": USER, "data": {"n": next(_serial)}})
        case.body = {"encryptedData": sealed["encryptedData"], "iv": sealed["iv"]}
    elif op == "POST /userinfo/verify" and SESSION_KEY:
        raw = json.dumps({"nickName": f"st{next(_serial)}"})
        case.body = {"rawData": raw, "signature": hashlib.sha1((raw + SESSION_KEY).encode()).hexdigest()}
    elif op == "GET /avatars/{file}" and AVATAR:
        case.path_parameters = {"file": AVATAR}
    elif op == "GET /admin/users":
        user, _ = _fresh_user()
        case.query = {"id": user}
    elif op == "DELETE /admin/sessions/{id}":
        user, _ = _fresh_user()
        sessions = _admin("GET", f"/admin/users/{user}/sessions")["data"]["sessions"]
        case.path_parameters = {"id": sessions[0]["id"]}
    elif op == "POST /admin/webhooks/{id}/redrive":
        case.path_parameters = {"id": _dead_webhook()}
    elif op == "POST /admin/apps":
        # An app QQ (the simulator) knows too, so its token can be fetched later in the run.
        appid = f"st-app-{next(_serial)}"
        _sim_app(appid)
        case.body = {"platform": "qq", "appid": appid, "secret": "st-secret"}
    elif op in ("PUT /admin/apps/{appid}", "DELETE /admin/apps/{appid}"):
        appid = f"st-app-{next(_serial)}"
        _sim_app(appid)
        _admin("POST", "/admin/apps", {"platform": "qq", "appid": appid, "secret": "st-secret"})
        case.path_parameters = {"appid": appid}
    elif case.path.startswith("/admin/users/{id}"):
        user, _ = _fresh_user()
        case.path_parameters = {"id": user}
        if op == "POST /admin/users/{id}/merge":
            other, _ = _fresh_user()
            case.body = {"from": other}
        elif op == "POST /admin/users/{id}/unban":
            _admin("POST", f"/admin/users/{user}/ban", {"reason": "schemathesis"})


def _admin(method, path, body=None):
    return _call(method, path, body, token=ADMIN)


def _dead_webhook():
    """The id of a dead webhook (the run's server sends to a closed port and gives up after a
    second): a fresh user's `user_created`, once it has died."""
    _fresh_user()
    for _ in range(100):
        dead = _admin("GET", "/admin/webhooks?state=dead&limit=1")["data"]["deliveries"]
        if dead:
            return dead[0]["id"]
        time.sleep(0.1)
    raise RuntimeError("no dead webhook within 10 s")



@schemathesis.hook
def after_call(context, case, response):
    """Records each operation's statuses, so the script can check every one answered 2xx."""
    stats = os.environ.get("WXLOGIN_ST_STATS")
    if stats:
        with open(stats, "a") as f:
            f.write(f"{case.method.upper()} {case.path} {response.status_code}\n")
