"""An app backend that accepts auth-api access tokens without calling auth-api per request.

The signature and claims are checked locally with PyJWT, and sessions that were ended (logout,
logout-all, password change, admin revoke...) are refused through a revocation set that follows
GET /revocations. See docs/backends.md; .ci/backends runs this very file.

    pip install -r requirements.txt
    AUTH_URL=http://127.0.0.1:8080 BACKEND_API_KEY=... JWT_SECRET=... python backend.py

Environment (the JWT_* names and defaults are auth-api's own):
    AUTH_URL          where auth-api answers (the JWKS and the revocation feed)
    BACKEND_API_KEY   one of auth-api's BACKEND_API_KEYS: a backend credential, never sent to apps
    JWT_ALGORITHM     HS256 (default), ES256 or EdDSA: exactly the one auth-api signs with
    JWT_SECRET        HS256 only: auth-api's JWT_SECRET (ES256/EdDSA use the public JWKS instead)
    JWT_ISSUER / JWT_AUDIENCE / JWT_LEEWAY   auth-api / mobile / 30
    PORT              where this backend listens (default 3001)

Routes: GET /hello answers {"user_id","session_id","role"} for a valid token, 401 otherwise;
GET /healthz is 200 once the first revocation snapshot has arrived (503 before: until then a
revoked session cannot be told apart, so no token is accepted).
"""

import json
import os
import random
import sys
import threading
import time
import urllib.request
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt  # PyJWT

AUTH_URL = os.environ.get("AUTH_URL", "http://127.0.0.1:8080").rstrip("/")
ALGORITHM = os.environ.get("JWT_ALGORITHM", "HS256")
ISSUER = os.environ.get("JWT_ISSUER", "auth-api")
AUDIENCE = os.environ.get("JWT_AUDIENCE", "mobile")
LEEWAY = int(os.environ.get("JWT_LEEWAY", "30"))
SERVICE_KEY = os.environ.get("BACKEND_API_KEY", "")
PORT = int(os.environ.get("PORT", "3001"))

# --- Verifying an access token ------------------------------------------------------------
# The key is chosen by the configured algorithm, never by the token's header: HS256 takes the
# shared secret; ES256/EdDSA take the published public keys (PyJWKClient caches them and
# refetches when a token names an unknown `kid`, i.e. after a key rotation).
if ALGORITHM == "HS256":
    SECRET = os.environ.get("JWT_SECRET", "").encode()
    JWKS = None
else:
    SECRET = None
    JWKS = jwt.PyJWKClient(AUTH_URL + "/.well-known/jwks.json", cache_keys=True, lifespan=300)


def verify_access_token(token):
    """The claims of a valid, unrevoked access token; raises otherwise."""
    key = SECRET if JWKS is None else JWKS.get_signing_key_from_jwt(token).key
    claims = jwt.decode(
        token,
        key,
        algorithms=[ALGORITHM],  # only the configured alg: never "none", never HS256 with a public key
        issuer=ISSUER,
        audience=AUDIENCE,
        leeway=LEEWAY,  # seconds of skew on exp and nbf, as auth-api allows
        options={"require": ["exp", "iss", "aud", "sub", "sid"]},
    )
    if revocations.has(claims["sid"]):
        raise jwt.InvalidTokenError("the session was revoked")
    return claims


# --- The revocation set -------------------------------------------------------------------
class Revocations:
    """session id -> forget_after (epoch seconds). A revoked session stays here until its last
    access token has expired (forget_after); after that the token's own exp refuses it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._revoked = {}
        self.synced = threading.Event()  # set once a snapshot has arrived

    def has(self, sid):
        with self._lock:
            forget_after = self._revoked.get(sid)
        return forget_after is not None and forget_after > time.time()

    def replace(self, entries):
        fresh = {e["session_id"]: _epoch(e["forget_after"]) for e in entries}
        with self._lock:
            self._revoked = fresh
        self.synced.set()

    def add(self, entry):
        with self._lock:
            self._revoked[entry["session_id"]] = _epoch(entry["forget_after"])

    def forget_expired(self):
        now = time.time()
        with self._lock:
            self._revoked = {s: f for s, f in self._revoked.items() if f > now}

    def __len__(self):
        return len(self._revoked)


def _epoch(rfc3339):
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


revocations = Revocations()


def follow_revocations():
    """GET /revocations as Server-Sent Events: `snapshot` (replace the set), then `revoked` (add
    one). auth-api sends a comment at least every 15 s, so 45 s of silence (the read timeout)
    means a dead connection. Reconnects with exponential backoff and jitter; each new connection
    starts with a snapshot, which covers whatever was revoked while we were away."""
    backoff = 0.25
    while True:
        request = urllib.request.Request(
            AUTH_URL + "/revocations",
            headers={"Authorization": "Bearer " + SERVICE_KEY, "Accept": "text/event-stream"},
        )
        try:
            with urllib.request.urlopen(request, timeout=45) as stream:
                event, data = "message", []
                for raw in stream:
                    line = raw.decode("utf-8").rstrip("\r\n")
                    if line == "":  # a blank line ends an event
                        if data:
                            on_event(event, "\n".join(data))
                            backoff = 0.25  # a whole event arrived: the feed works again
                        event, data = "message", []
                    elif line.startswith(":"):
                        continue  # keep-alive comment
                    else:
                        field, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if field == "event":
                            event = value
                        elif field == "data":
                            data.append(value)
            print("revocation feed: closed", file=sys.stderr)
        except Exception as error:  # noqa: BLE001 - any failure means: reconnect
            print(f"revocation feed: {error}; reconnecting in {backoff:.2f} s", file=sys.stderr)
        time.sleep(backoff * (0.5 + random.random()))
        backoff = min(backoff * 2, 30)


def on_event(event, data):
    if event == "snapshot":
        revocations.replace(json.loads(data)["revoked"])
    elif event == "revoked":
        revocations.add(json.loads(data))


def forget_expired_forever():
    while True:
        time.sleep(60)
        revocations.forget_expired()


# --- The app's own routes -------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the name http.server calls
        if self.path == "/healthz":
            synced = revocations.synced.is_set()
            return self.answer(200 if synced else 503, {"synced": synced, "revoked": len(revocations)})
        if self.path != "/hello":
            return self.answer(404, {"error": "not_found"})
        if not revocations.synced.is_set():
            return self.answer(503, {"error": "unavailable"}, {"Retry-After": "1"})
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            return self.answer(401, {"error": "missing_token"}, {"WWW-Authenticate": "Bearer"})
        try:
            claims = verify_access_token(token)
        except Exception:  # noqa: BLE001 - any failure is a refusal; never echo why or the token
            return self.answer(401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        self.answer(200, {"user_id": claims["sub"], "session_id": claims["sid"], "role": claims.get("role")})

    def answer(self, status, body, headers=None):
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):  # quiet: the app's own logging goes here
        pass


if __name__ == "__main__":
    if not SERVICE_KEY or (ALGORITHM == "HS256" and not SECRET):
        sys.exit("BACKEND_API_KEY (and JWT_SECRET for HS256) are required")
    threading.Thread(target=follow_revocations, daemon=True).start()
    threading.Thread(target=forget_expired_forever, daemon=True).start()
    print(f"backend listening on 127.0.0.1:{PORT}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
