// A flaky HTTP proxy (Node, no dependencies) in front of auth-api, for .ci/client-soak. For a share of
// requests it does what mobile networks do to apps:
//   drop_request   closes the client's connection before forwarding: the server never sees it
//   drop_answer    forwards, lets the server finish, then closes the client's connection unanswered
//   reset          sends a TCP RST, either before forwarding or after the server answered
//   delay          holds the request (or the answer) for 2-4.8 s: late arrivals, client timeouts
//   unavailable    answers 503 {"error":"unavailable"} with Retry-After: 1, as a server whose
//                  database is down does, without forwarding
// The client cannot tell drop_request from drop_answer: that is the point.
//
// Paths under /__slow/ are forwarded without that prefix over a "slow link": delays are three times
// as likely there, as for a widget or background task whose traffic the OS defers. A client on it
// sends refreshes that arrive after its other process has rotated twice: `superseded`.
//
//   node flaky-proxy.mjs --listen 127.0.0.1:9000 --upstream http://127.0.0.1:8080 [--seed N]
//
// Control routes, answered by the proxy itself: GET /__proxy/stats (counts as JSON),
// POST /__proxy/calm (no more faults; the soak's final checks), POST /__proxy/flaky (faults again).
// It logs no request content: bodies carry passwords and tokens.
import http from "node:http";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => {
    if (arg.startsWith("--")) pairs.push([arg.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
const [listenHost, listenPort] = (args.listen ?? "127.0.0.1:0").split(":");
const upstream = new URL(args.upstream ?? "http://127.0.0.1:8080");

// Shares of requests per fault; the rest pass untouched. Overridable for experiments.
const SHARES = {
  drop_request: Number(process.env.PROXY_DROP_REQUEST ?? 0.05),
  drop_answer: Number(process.env.PROXY_DROP_ANSWER ?? 0.07),
  reset: Number(process.env.PROXY_RESET ?? 0.04),
  delay: Number(process.env.PROXY_DELAY ?? 0.12),
  unavailable: Number(process.env.PROXY_UNAVAILABLE ?? 0.03),
};

// A seeded generator, so a failing run's fault sequence can be asked for again (timing still varies).
let seed = Number(args.seed ?? Date.now()) >>> 0;
function random() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const SLOW_SHARES = { ...SHARES, delay: Math.min(3 * SHARES.delay, 0.5) };

let calm = false;
function pickFault(slow) {
  if (calm) return "pass";
  let r = random();
  for (const [fault, share] of Object.entries(slow ? SLOW_SHARES : SHARES)) {
    if (r < share) return fault;
    r -= share;
  }
  return "pass";
}

const stats = {
  requests: 0,
  faults: { drop_request: 0, drop_answer: 0, reset: 0, delay: 0, unavailable: 0 },
  upstream_statuses: {},
  upstream_5xx: 0,
  upstream_errors: 0,
};

// Keep-alive both ways, like a phone talking to a load balancer; the upstream pool stays well under
// the server's per-address connection limit. Idle upstream connections are closed after 3 s, before
// the server's own 5 s keep-alive closes them under a request being sent (a fault nobody injected).
const agent = new http.Agent({ keepAlive: true, maxSockets: 64, timeout: 3000 });

// Hop-by-hop headers are not forwarded; the body is re-sent whole with its own length.
const HOP = new Set(["connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te"]);
function endToEnd(headers) {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !HOP.has(name.toLowerCase())));
}

function control(req, res) {
  if (req.method === "GET" && req.url === "/__proxy/stats") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ ...stats, calm }));
  } else if (req.method === "POST" && (req.url === "/__proxy/calm" || req.url === "/__proxy/flaky")) {
    calm = req.url === "/__proxy/calm";
    res.writeHead(204).end();
  } else {
    res.writeHead(404).end();
  }
}

function forward(req, body, onAnswer) {
  const up = http.request(
    {
      agent,
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: { ...endToEnd(req.headers), host: upstream.host, "content-length": body.length },
    },
    (ures) => {
      const chunks = [];
      ures.on("data", (c) => chunks.push(c));
      ures.on("end", () => {
        const status = ures.statusCode ?? 0;
        stats.upstream_statuses[status] = (stats.upstream_statuses[status] ?? 0) + 1;
        if (status >= 500) stats.upstream_5xx++;
        onAnswer(status, endToEnd(ures.headers), Buffer.concat(chunks));
      });
      ures.on("error", (err) => {
        stats.upstream_errors++;
        console.log(`upstream error (answer): ${err.code ?? err.message}`);
        onAnswer(502, { "content-type": "application/json" }, Buffer.from('{"error":"bad_gateway"}'));
      });
    },
  );
  up.on("error", (err) => {
    stats.upstream_errors++;
    console.log(`upstream error (request): ${err.code ?? err.message}`);
    onAnswer(502, { "content-type": "application/json" }, Buffer.from('{"error":"bad_gateway"}'));
  });
  up.end(body);
}

function handle(req, res, body) {
  stats.requests++;
  const slow = req.url.startsWith("/__slow/");
  if (slow) req.url = req.url.slice("/__slow".length);
  const fault = pickFault(slow);
  if (fault !== "pass") stats.faults[fault]++;
  const socket = req.socket;
  const reply = (status, headers, payload) => {
    if (res.destroyed || socket.destroyed) return; // the client gave up (its timeout)
    res.writeHead(status, { ...headers, "content-length": payload.length });
    res.end(payload);
  };
  const delay = () => 2000 + random() * 2800;

  switch (fault) {
    case "drop_request":
      socket.destroy();
      return;
    case "unavailable":
      reply(503, { "content-type": "application/json", "retry-after": "1" },
        Buffer.from('{"error":"unavailable","message":"injected by the soak proxy"}'));
      return;
    case "reset":
      if (random() < 0.5) {
        socket.resetAndDestroy();
        return;
      }
      forward(req, body, () => {
        if (!socket.destroyed) socket.resetAndDestroy();
      });
      return;
    case "drop_answer":
      forward(req, body, () => socket.destroy());
      return;
    case "delay":
      if (random() < 0.5) setTimeout(() => forward(req, body, reply), delay());
      else forward(req, body, (...answer) => setTimeout(() => reply(...answer), delay()));
      return;
    default:
      forward(req, body, reply);
  }
}

const server = http.createServer((req, res) => {
  // A client that gives up mid-request must not crash the proxy.
  req.on("error", () => {});
  res.on("error", () => {});
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    if (req.url?.startsWith("/__proxy/")) control(req, res);
    else handle(req, res, Buffer.concat(chunks));
  });
});
server.on("clientError", (_err, socket) => socket.destroy());
// Longer than any pause in the soak, so that idle keep-alive connections are not closed under the
// client at the moment it reuses one (a fault nobody injected).
server.keepAliveTimeout = 60_000;
server.headersTimeout = 65_000;

server.listen(Number(listenPort), listenHost, () => {
  const { port } = server.address();
  console.log(`flaky proxy on ${listenHost}:${port} -> ${upstream.host}, shares ${JSON.stringify(SHARES)}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    console.log(`flaky proxy stats ${JSON.stringify(stats)}`);
    process.exit(0);
  });
}
