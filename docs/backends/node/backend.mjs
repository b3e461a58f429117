// An app backend that accepts auth-api access tokens without calling auth-api per request:
// the signature and claims are checked locally with `jose`, and sessions that were ended
// (logout, logout-all, password change, admin revoke...) are refused through a revocation set
// that follows GET /revocations. See docs/backends.md; .ci/backends runs this very file.
//
//   AUTH_URL=http://127.0.0.1:8080 BACKEND_API_KEY=... JWT_SECRET=... node backend.mjs
//
// Environment (the JWT_* names and defaults are auth-api's own):
//   AUTH_URL          where auth-api answers (the JWKS and the revocation feed)
//   BACKEND_API_KEY   one of auth-api's BACKEND_API_KEYS: a backend credential, never sent to apps
//   JWT_ALGORITHM     HS256 (default), ES256 or EdDSA: exactly the one auth-api signs with
//   JWT_SECRET        HS256 only: auth-api's JWT_SECRET (ES256/EdDSA use the public JWKS instead)
//   JWT_ISSUER / JWT_AUDIENCE / JWT_LEEWAY   auth-api / mobile / 30
//   PORT              where this backend listens (default 3000)
//
// Routes: GET /hello answers {"user_id","session_id","role"} for a valid token, 401 otherwise;
// GET /healthz is 200 once the first revocation snapshot has arrived (503 before: until then a
// revoked session cannot be told apart, so no token is accepted).
import http from "node:http";
import * as jose from "jose";

const env = (name, fallback) => process.env[name] ?? fallback;
const AUTH_URL = env("AUTH_URL", "http://127.0.0.1:8080");
const ALGORITHM = env("JWT_ALGORITHM", "HS256");
const ISSUER = env("JWT_ISSUER", "auth-api");
const AUDIENCE = env("JWT_AUDIENCE", "mobile");
const LEEWAY = Number(env("JWT_LEEWAY", "30"));
const SERVICE_KEY = env("BACKEND_API_KEY", "");
const PORT = Number(env("PORT", "3000"));

// --- Verifying an access token -----------------------------------------------------------
// The key is chosen by the configured algorithm, never by the token's header: HS256 takes the
// shared secret; ES256/EdDSA take the published public keys (fetched once, cached, refetched
// when a token names an unknown `kid`, i.e. after a key rotation).
const key =
  ALGORITHM === "HS256"
    ? new TextEncoder().encode(required("JWT_SECRET"))
    : jose.createRemoteJWKSet(new URL("/.well-known/jwks.json", AUTH_URL));

/** The claims of a valid, unrevoked access token; throws otherwise. */
export async function verifyAccessToken(token) {
  const { payload } = await jose.jwtVerify(token, key, {
    algorithms: [ALGORITHM], // only the configured alg: never "none", never HS256 with a public key
    issuer: ISSUER,
    audience: AUDIENCE,
    clockTolerance: LEEWAY, // seconds of skew on exp and nbf, as auth-api allows
    requiredClaims: ["exp", "sub", "sid"],
  });
  if (revocations.has(payload.sid)) throw new Error("the session was revoked");
  return payload;
}

// --- The revocation set --------------------------------------------------------------------
// session id -> forget_after (ms). A revoked session stays here until its last access token
// has expired (forget_after); after that the token's own exp refuses it.
const revoked = new Map();
let synced = false; // true once a snapshot has arrived
export const revocations = {
  has(sid) {
    const forgetAfter = revoked.get(sid);
    return forgetAfter !== undefined && forgetAfter > Date.now();
  },
  replace(entries) {
    revoked.clear();
    for (const entry of entries) this.add(entry);
    synced = true;
  },
  add({ session_id, forget_after }) {
    revoked.set(session_id, Date.parse(forget_after));
  },
  forgetExpired() {
    const now = Date.now();
    for (const [sid, forgetAfter] of revoked) if (forgetAfter <= now) revoked.delete(sid);
  },
  get size() {
    return revoked.size;
  },
};
setInterval(() => revocations.forgetExpired(), 60_000).unref();

// GET /revocations as Server-Sent Events: `snapshot` (replace the set), then `revoked` (add one).
// auth-api sends a comment at least every 15 s, so 45 s of silence means a dead connection.
// Reconnects with exponential backoff and jitter; each new connection starts with a snapshot,
// which covers whatever was revoked while we were away.
async function followRevocations() {
  let backoff = 250;
  for (;;) {
    const abort = new AbortController();
    let silence;
    const alive = () => {
      clearTimeout(silence);
      silence = setTimeout(() => abort.abort(), 45_000);
    };
    try {
      alive();
      const response = await fetch(new URL("/revocations", AUTH_URL), {
        headers: { authorization: `Bearer ${SERVICE_KEY}`, accept: "text/event-stream" },
        signal: abort.signal,
      });
      if (!response.ok) throw new Error(`GET /revocations answered ${response.status}`);
      const decoder = new TextDecoder();
      let buffer = "";
      for await (const chunk of response.body) {
        alive();
        buffer += decoder.decode(chunk, { stream: true });
        let end;
        while ((end = buffer.search(/\r?\n\r?\n/)) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
          onEvent(parseEvent(block));
          backoff = 250; // a whole event arrived: the feed works again
        }
      }
      throw new Error("the revocation feed closed");
    } catch (error) {
      console.error(`revocation feed: ${error.message}; reconnecting in ${backoff} ms`);
    } finally {
      clearTimeout(silence);
      abort.abort();
    }
    await new Promise((resolve) => setTimeout(resolve, backoff * (0.5 + Math.random())));
    backoff = Math.min(backoff * 2, 30_000);
  }
}

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith(":")) continue; // keep-alive comment
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    if (field === "data") data.push(value);
  }
  return { event, data: data.join("\n") };
}

function onEvent({ event, data }) {
  if (event === "snapshot") revocations.replace(JSON.parse(data).revoked);
  if (event === "revoked") revocations.add(JSON.parse(data));
}

// --- The app's own routes --------------------------------------------------------------------
function answer(res, status, body, headers = {}) {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

const server = http.createServer(async (req, res) => {
  if (req.url === "/healthz") {
    return answer(res, synced ? 200 : 503, { synced, revoked: revocations.size });
  }
  if (req.url !== "/hello") return answer(res, 404, { error: "not_found" });
  if (!synced) return answer(res, 503, { error: "unavailable" }, { "retry-after": "1" });
  const [scheme, token] = (req.headers.authorization ?? "").split(" ");
  if (scheme !== "Bearer" || !token) {
    return answer(res, 401, { error: "missing_token" }, { "www-authenticate": "Bearer" });
  }
  try {
    const claims = await verifyAccessToken(token);
    answer(res, 200, { user_id: claims.sub, session_id: claims.sid, role: claims.role });
  } catch {
    // Never echo the token or the reason to the client; the app signs in again or refreshes.
    answer(res, 401, { error: "invalid_token" }, { "www-authenticate": 'Bearer error="invalid_token"' });
  }
});

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is required`);
    process.exit(2);
  }
  return value;
}

required("BACKEND_API_KEY");
followRevocations();
server.listen(PORT, "127.0.0.1", () => console.log(`backend listening on 127.0.0.1:${PORT}`));
