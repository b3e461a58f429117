// auth-client.ts: a dependency-free client for auth-api, for React Native apps and any JavaScript
// runtime with a global `fetch` and `AbortController`. It does what docs/clients.md asks of an app,
// and CI runs it against a live server behind a proxy that loses requests and answers
// (.ci/client-soak), so this file is kept working, not just readable.
//
//   const auth = new AuthClient({ baseUrl: "https://auth.example.com", storage: secureStorage });
//   await auth.login(email, password, deviceName);
//   const res = await auth.fetch("/me");              // Bearer added; 401 -> refresh once -> retry once
//   await auth.logout();
//
// Errors a caller handles: SignedOutError (show the sign-in screen), OfflineError and
// UnavailableError (keep going later; the tokens are kept), ApiError (an answer the app must show or
// a bug). Tokens never appear in an error, an event or a log line.

/** Where the tokens live: the Keychain / Keystore, e.g. expo-secure-store (see docs/clients.md). */
export interface TokenStorage {
  get(key: string): Promise<string | null>;
  set(key: string, value: string): Promise<void>;
  remove(key: string): Promise<void>;
}

/** The pair as stored. */
export interface StoredTokens {
  accessToken: string;
  refreshToken: string;
  sessionId: string;
  expiresIn: number;
  refreshExpiresIn: number;
  /** Wall clock (ms) when the answer arrived: ages a pair read by another process or a later run. */
  obtainedAt: number;
  /**
   * Fingerprints of this refresh token and its last ancestors, newest first. Every successful
   * `/refresh` answers the successor of the token sent (a retry gets the same one), so a pair whose
   * chain holds another's token is newer: this orders pairs written by processes that race, where
   * arrival times cannot (a delayed answer carries an older token). Fingerprints, not tokens: a
   * spent token is still worth its successor during the grace.
   */
  chain: string[];
}

/**
 * Why the app is signed out. The server's reasons (`expired`, `revoked`, `reuse_detected`,
 * `invalid`, or one added later) plus: `user` (logout), `elsewhere` (another process of the app
 * removed the tokens), `none` (there was no session to begin with). Never `superseded`.
 */
export type SignOutReason = string;

/** What happened, for metrics and debugging. Carries no token. */
export type AuthEvent =
  | { type: "refreshed"; attempts: number }
  | { type: "lost_answer"; attempt: number; cause: string }
  | { type: "not_sent"; attempt: number; cause: string }
  | { type: "retry"; attempt: number }
  | { type: "superseded" }
  | { type: "adopted" }
  | { type: "token_rejected" }
  | { type: "unavailable"; path: string; retryAfterMs: number }
  | { type: "server_error"; path: string; status: number }
  | { type: "store_failed"; operation: "write" | "remove" | "read" }
  | { type: "signed_out"; reason: SignOutReason }
  | { type: "logout_queued" };

export interface Clock {
  /** Never goes back, unaffected by the user changing the date: measures token age. */
  monotonicMs(): number;
  /** Wall clock: only to age a pair read from storage (written by another process or an earlier run). */
  wallMs(): number;
}

export interface AuthClientOptions {
  baseUrl: string;
  storage: TokenStorage;
  /** Storage key of the pair; the queue of unsent logouts uses this key + ".logout". */
  storageKey?: string;
  /** Per `/refresh` attempt. Well under the server's reuse grace (120 s): 15 s. */
  refreshTimeoutMs?: number;
  /**
   * How long after the first attempt that may have reached the server a lost answer is still
   * retried with the same token. A retry must reach the server within its grace, so this plus
   * one timeout stays well under it: 60 s for the default 120 s.
   */
  lostAnswerWindowMs?: number;
  /** Refresh once this share of `expires_in` has passed: 0.8. */
  freshFraction?: number;
  /** How long `/refresh` keeps waiting out 503s (Retry-After) before giving up: 30 s. */
  unavailableBudgetMs?: number;
  /** For `/login` and `/logout`: 15 s. */
  requestTimeoutMs?: number;
  fetch?: typeof fetch;
  clock?: Clock;
  onEvent?: (event: AuthEvent) => void;
  /** Called once when a signed-in app becomes signed out, whatever the reason. */
  onSignedOut?: (reason: SignOutReason) => void;
}

/** The session is over (or never was): show the sign-in screen. */
export class SignedOutError extends Error {
  constructor(readonly reason: SignOutReason) {
    super(`signed out (${reason})`);
    this.name = "SignedOutError";
  }
}

/**
 * No usable answer yet: no network, or (after `superseded`) the other process's newer pair has not
 * reached storage. The tokens are kept; try again later.
 */
export class OfflineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OfflineError";
  }
}

/** 503: the service or its database is down. The tokens are kept; wait `retryAfterMs`. */
export class UnavailableError extends Error {
  constructor(readonly retryAfterMs: number) {
    super(`service unavailable, retry after ${retryAfterMs} ms`);
    this.name = "UnavailableError";
  }
}

/** An answer the client does not recover from by itself (wrong password, 429, a bug...). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly retryAfterMs?: number,
  ) {
    super(`HTTP ${status} ${code}`);
    this.name = "ApiError";
  }
}

interface Held {
  pair: StoredTokens;
  /** Monotonic time the pair was obtained (or its age when read from storage). */
  monoAt: number;
}

type Spent =
  | { kind: "tokens"; pair: StoredTokens; attempts: number }
  | { kind: "refused"; reason: string };

/** No answer: `sent` is false only when the request provably never left (DNS, connect refused). */
class NoAnswer extends Error {
  constructor(
    readonly sent: boolean,
    readonly causeText: string,
  ) {
    super(causeText);
  }
}

interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

// Error codes that mean the request never reached the network (Node/undici names them; React
// Native's fetch only says "Network request failed", which is treated as maybe-sent).
const NOT_SENT_CODES = new Set([
  "ENOTFOUND",
  "EAI_AGAIN",
  "ECONNREFUSED",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
]);

const defaultClock: Clock = {
  monotonicMs: () =>
    typeof performance !== "undefined" && typeof performance.now === "function"
      ? performance.now()
      : Date.now(),
  wallMs: () => Date.now(),
};

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class AuthClient {
  private readonly baseUrl: string;
  private readonly storage: TokenStorage;
  private readonly key: string;
  private readonly logoutKey: string;
  private readonly refreshTimeoutMs: number;
  private readonly lostAnswerWindowMs: number;
  private readonly freshFraction: number;
  private readonly unavailableBudgetMs: number;
  private readonly requestTimeoutMs: number;
  private readonly fetchImpl: typeof fetch;
  private readonly clock: Clock;
  private readonly onEvent: (event: AuthEvent) => void;
  private readonly onSignedOut: (reason: SignOutReason) => void;

  /** This process's pair; storage is re-read before each refresh (other processes may rotate). */
  private current: Held | null = null;
  /** A pair whose write to storage failed: written again before every use and on a timer. */
  private unsaved: StoredTokens | null = null;
  private saveRetry: ReturnType<typeof setTimeout> | null = null;
  /** Tokens of a signed-out session still on disk because removing them failed. */
  private removePending = false;
  /** The one refresh in flight (single-flight); every caller awaits it. */
  private inflight: Promise<Held> | null = null;
  /** Bumped by sign-in and sign-out so that an older refresh's answer is never adopted. */
  private epoch = 0;

  constructor(options: AuthClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.storage = options.storage;
    this.key = options.storageKey ?? "auth-api.tokens";
    this.logoutKey = `${this.key}.logout`;
    this.refreshTimeoutMs = options.refreshTimeoutMs ?? 15_000;
    this.lostAnswerWindowMs = options.lostAnswerWindowMs ?? 60_000;
    this.freshFraction = options.freshFraction ?? 0.8;
    this.unavailableBudgetMs = options.unavailableBudgetMs ?? 30_000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15_000;
    // Bound, so that a React Native or browser fetch is not called with `this` set to the client.
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
    this.clock = options.clock ?? defaultClock;
    this.onEvent = options.onEvent ?? (() => {});
    this.onSignedOut = options.onSignedOut ?? (() => {});
  }

  // ---------------------------------------------------------------------------------------------
  // Public API

  /** Signs in. One attempt: a lost answer leaves an unused session that expires on its own. */
  async login(email: string, password: string, deviceName?: string): Promise<void> {
    const body: Record<string, string> = { email, password };
    if (deviceName) body.device_name = deviceName;
    let answer: Answer;
    try {
      answer = await this.post("/login", body, this.requestTimeoutMs);
    } catch (e) {
      throw e instanceof NoAnswer ? new OfflineError("no answer to /login") : e;
    }
    if (answer.status === 200) {
      const pair = this.parsePair(answer.body);
      if (!pair) throw new ApiError(200, "malformed_token_response");
      this.epoch++;
      this.inflight = null;
      await this.adopt(pair, this.epoch, { force: true });
      return;
    }
    throw this.errorFor("/login", answer);
  }

  /** True when a pair is held in memory or storage (it may still turn out to be revoked). */
  async isSignedIn(): Promise<boolean> {
    try {
      await this.held();
      return true;
    } catch (e) {
      if (e instanceof SignedOutError) return false;
      throw e;
    }
  }

  /** A fresh access token, refreshing first when 80 % of its life has passed. */
  async accessToken(): Promise<string> {
    const held = await this.held();
    if (this.isFresh(held)) return held.pair.accessToken;
    return (await this.refresh(held)).pair.accessToken;
  }

  /**
   * `fetch` on the API with the Bearer header. A `401 invalid_token` (expired early, clock drift,
   * revoked) triggers one refresh and one retry; a second 401 is returned to the caller. The body
   * must be re-sendable (a string, not a stream). `init.signal` cancels the API call, never a
   * refresh: a refresh abandoned mid-flight would leave the app with a spent token.
   */
  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const held = await this.held();
    const used = this.isFresh(held) ? held : await this.refresh(held);
    const first = await this.send(path, init, used.pair.accessToken);
    if (first.status !== 401 || !isInvalidToken(first)) return first;
    await discard(first);
    this.emit({ type: "token_rejected" });
    const renewed = await this.renewAfterRejection(used);
    return this.send(path, init, renewed.pair.accessToken);
  }

  /**
   * Signs out this device. Local tokens go at once, online or not; the `/logout` call is queued in
   * storage and retried by `flushLogouts()` (call it at start and when the network comes back).
   */
  async logout(): Promise<void> {
    let token = this.unsaved?.refreshToken ?? this.current?.pair.refreshToken;
    token ??= (await this.readStored())?.refreshToken;
    await this.signOut("user");
    if (!token) return;
    try {
      const queue = await this.readLogoutQueue();
      // Any token of the session ends it, spent or not; a short queue is enough.
      await this.storage.set(this.logoutKey, JSON.stringify([...queue, token].slice(-10)));
      this.emit({ type: "logout_queued" });
    } catch {
      this.emit({ type: "store_failed", operation: "write" });
      await this.sendLogout(token); // nowhere to queue it: one attempt now
      return;
    }
    await this.flushLogouts();
  }

  /** Sends queued logouts; keeps those that got no answer or a 5xx. */
  async flushLogouts(): Promise<void> {
    const queue = await this.readLogoutQueue();
    if (queue.length === 0) return;
    const sent = new Set<string>();
    for (const token of queue) {
      if (await this.sendLogout(token)) sent.add(token);
    }
    // Read the queue again: a logout queued meanwhile stays queued.
    const left = (await this.readLogoutQueue()).filter((token) => !sent.has(token));
    try {
      if (left.length === 0) await this.storage.remove(this.logoutKey);
      else await this.storage.set(this.logoutKey, JSON.stringify(left));
    } catch {
      this.emit({ type: "store_failed", operation: "write" });
    }
  }

  /** The session id of the held pair, for "this device" in a sessions screen. */
  async sessionId(): Promise<string> {
    return (await this.held()).pair.sessionId;
  }

  // ---------------------------------------------------------------------------------------------
  // Holding the pair

  /** The pair to use: memory, else storage. Retries a failed write before anything uses the pair. */
  private async held(): Promise<Held> {
    if (this.removePending) await this.removeStored();
    const unsaved = this.unsaved;
    if (unsaved) {
      const kept = await this.persist(unsaved);
      if (kept !== unsaved) this.takeStored(kept); // another process went on from our pair
    }
    if (this.current) return this.current;
    const stored = await this.readStored();
    if (!stored) throw new SignedOutError("none");
    this.current = this.fromStorage(stored);
    return this.current;
  }

  private isFresh(held: Held): boolean {
    const age = this.clock.monotonicMs() - held.monoAt;
    return age >= 0 && age < held.pair.expiresIn * 1000 * this.freshFraction;
  }

  private isUnexpired(held: Held): boolean {
    const age = this.clock.monotonicMs() - held.monoAt;
    return age >= 0 && age < held.pair.expiresIn * 1000;
  }

  /** A pair read from storage has no monotonic time in this process: age it by the wall clock once. */
  private fromStorage(pair: StoredTokens): Held {
    const age = this.clock.wallMs() - pair.obtainedAt;
    const plausible = age >= 0 && age < pair.expiresIn * 1000;
    // A wall clock that went back, or a pair older than its access token: stale, refresh first.
    return { pair, monoAt: plausible ? this.clock.monotonicMs() - age : -Infinity };
  }

  /** Makes a pair from the server current: memory first (the old refresh token is spent), then storage. */
  private async adopt(pair: StoredTokens, epoch: number, opts: { force?: boolean } = {}): Promise<Held> {
    if (epoch !== this.epoch) return this.afterEpochChange();
    this.current = { pair, monoAt: this.clock.monotonicMs() };
    const kept = await this.persist(pair, opts);
    if (kept !== pair) this.takeStored(kept);
    return this.current;
  }

  /**
   * Store before use. Writes `pair` unless storage already holds a newer pair of the chain (another
   * process rotated further while this one waited for its answer), and answers the pair to use. A
   * failed write keeps the pair as `unsaved`: used from memory, written again before every use.
   */
  private async persist(pair: StoredTokens, opts: { force?: boolean } = {}): Promise<StoredTokens> {
    if (!opts.force) {
      const stored = await this.readStored();
      if (stored && (stored.refreshToken === pair.refreshToken || isNewer(stored, pair))) {
        if (this.unsaved === pair) this.unsaved = null;
        return stored.refreshToken === pair.refreshToken ? pair : stored;
      }
    }
    for (let attempt = 1; attempt <= 2; attempt++) {
      try {
        await this.storage.set(this.key, JSON.stringify(pair));
        if (this.unsaved === pair) this.unsaved = null;
        return pair;
      } catch {
        this.emit({ type: "store_failed", operation: "write" });
      }
    }
    // The pair in memory is the only good one now (its parent is spent): keep it, retry later.
    this.unsaved = pair;
    this.scheduleSaveRetry();
    return pair;
  }

  /**
   * Writes an unsaved pair again soon, not only at the next use: another process waiting on
   * storage after `superseded` must not depend on this one being busy.
   */
  private scheduleSaveRetry(): void {
    if (this.saveRetry) return;
    this.saveRetry = setTimeout(() => {
      this.saveRetry = null;
      const unsaved = this.unsaved;
      if (!unsaved) return;
      this.persist(unsaved)
        .then((kept) => {
          if (kept !== unsaved && this.unsaved === null && this.current?.pair === unsaved) this.takeStored(kept);
        })
        .catch(() => this.scheduleSaveRetry());
    }, 250);
  }

  /** Switches to a pair another process stored. */
  private takeStored(stored: StoredTokens): Held {
    this.current = this.fromStorage(stored);
    this.unsaved = null;
    this.emit({ type: "adopted" });
    return this.current;
  }

  /** The stored pair; `undefined` when storage cannot be read (locked), which is not "signed out". */
  private async readStored(): Promise<StoredTokens | null | undefined> {
    let text: string | null;
    try {
      text = await this.storage.get(this.key);
    } catch {
      this.emit({ type: "store_failed", operation: "read" });
      return undefined;
    }
    if (text === null) return null;
    try {
      return validPair(JSON.parse(text));
    } catch {
      return null;
    }
  }

  private async removeStored(): Promise<void> {
    try {
      await this.storage.remove(this.key);
      this.removePending = false;
    } catch {
      this.emit({ type: "store_failed", operation: "remove" });
      this.removePending = true;
    }
  }

  private async signOut(reason: SignOutReason): Promise<void> {
    const wasSignedIn = this.current !== null || this.unsaved !== null;
    this.epoch++;
    this.current = null;
    this.unsaved = null;
    this.inflight = null;
    if (reason !== "elsewhere") await this.removeStored();
    if (wasSignedIn || reason === "user") {
      this.emit({ type: "signed_out", reason });
      this.onSignedOut(reason);
    }
  }

  /** A sign-in or sign-out happened while a refresh ran: its answer is dropped. */
  private afterEpochChange(): Held {
    if (this.current) return this.current;
    throw new SignedOutError("user");
  }

  // ---------------------------------------------------------------------------------------------
  // Refresh

  /** Single-flight: one refresh at a time in this process; every caller joins it. */
  private refresh(stale: Held): Promise<Held> {
    if (!this.inflight) {
      const run = this.runRefresh(stale).finally(() => {
        if (this.inflight === run) this.inflight = null;
      });
      this.inflight = run;
    }
    return this.inflight;
  }

  /** After a 401: refresh unless another call already replaced the rejected access token. */
  private async renewAfterRejection(rejected: Held): Promise<Held> {
    if (this.inflight) return this.inflight;
    const now = this.current;
    if (now && now.pair.accessToken !== rejected.pair.accessToken) return now;
    // Fresh by the clock but refused by the server: spend the refresh token anyway.
    return this.refresh(rejected);
  }

  private async runRefresh(stale: Held): Promise<Held> {
    const epoch = this.epoch;
    let base = await this.newestKnown(stale);
    // Another process rotated meanwhile and its pair is still fresh: nothing to spend.
    if (base.pair.refreshToken !== stale.pair.refreshToken && this.isFresh(base)) return base;
    for (let round = 1; ; round++) {
      const spent = await this.spend(base.pair);
      if (epoch !== this.epoch) return this.afterEpochChange();
      if (spent.kind === "tokens") {
        this.emit({ type: "refreshed", attempts: spent.attempts });
        return this.adopt(spent.pair, epoch);
      }
      if (spent.reason !== "superseded") {
        await this.signOut(spent.reason);
        throw new SignedOutError(spent.reason);
      }
      // A late duplicate: another thread or process already rotated past this token, and stores
      // each pair before using it. Take the newer pair from storage; the session is fine, so this
      // is never a sign-out (if the session were really lost, the server would say so).
      this.emit({ type: "superseded" });
      const newer = await this.awaitNewerStored(base.pair);
      if (epoch !== this.epoch) return this.afterEpochChange();
      if (!newer) throw new OfflineError("superseded, and the newer pair has not reached storage yet; tokens kept");
      base = this.takeStored(newer);
      // Use it while its access token lives. An expired one is spent in turn; a process on a slow
      // link can lose that race again, so after a few rounds it takes the newest pair as it is
      // (a 401 will refresh it) rather than loop.
      if (this.isUnexpired(base) || round >= 5) return base;
    }
  }

  /**
   * Before spending: the newer of this process's pair and the stored one (another process may have
   * rotated since this one last looked). Storage emptied by another process is a sign-out.
   */
  private async newestKnown(stale: Held): Promise<Held> {
    const mine = this.current ?? stale;
    const stored = await this.readStored();
    if (stored === undefined || stored?.refreshToken === mine.pair.refreshToken) return mine;
    if (stored === null) {
      if (this.unsaved) return mine; // our write failed: storage is behind, not signed out
      await this.signOut("elsewhere");
      throw new SignedOutError("elsewhere");
    }
    if (isNewer(stored, mine.pair)) return this.takeStored(stored);
    // Storage is behind (our write failed, or a slow writer elsewhere): ours goes back first.
    const kept = await this.persist(mine.pair);
    return kept === mine.pair ? mine : this.takeStored(kept);
  }

  /**
   * After `superseded`: the process that rotated stores before it uses, but may still be writing
   * (or retrying a failed write). Poll storage for up to 5 s.
   */
  private async awaitNewerStored(sent: StoredTokens): Promise<StoredTokens | null> {
    for (let i = 0; i < 50; i++) {
      const stored = await this.readStored();
      if (stored && isNewer(stored, sent)) return stored;
      if (stored === null && !this.unsaved) {
        await this.signOut("elsewhere");
        throw new SignedOutError("elsewhere");
      }
      await sleep(100);
    }
    return null;
  }

  /**
   * Spends one refresh token. A lost answer is retried at once with the same token: the server
   * answers a retry within its grace with the same successor. Only an answer ends the loop.
   */
  private async spend(parent: StoredTokens): Promise<Spent> {
    const token = parent.refreshToken;
    // Monotonic time of the first attempt that may have reached the server: from then on, retries
    // must land within the server's grace, so they stop after `lostAnswerWindowMs`.
    let firstMaybeSpent: number | null = null;
    let waitedFor503 = 0;
    for (let attempt = 1; ; attempt++) {
      if (attempt > 1) this.emit({ type: "retry", attempt });
      const startedAt = this.clock.monotonicMs();
      let answer: Answer;
      try {
        answer = await this.post("/refresh", { refresh_token: token }, this.refreshTimeoutMs);
      } catch (e) {
        if (!(e instanceof NoAnswer)) throw e;
        if (e.sent) {
          firstMaybeSpent ??= startedAt;
          this.emit({ type: "lost_answer", attempt, cause: e.causeText });
        } else {
          this.emit({ type: "not_sent", attempt, cause: e.causeText });
          // Nothing was spent by this attempt; a device that is offline stops here and keeps the token.
          if (firstMaybeSpent === null && attempt >= 3) throw new OfflineError("offline: /refresh not sent");
        }
        // The first retry goes at once (a lost answer is usually one dropped packet or handover);
        // later ones back off a little, staying inside the window.
        const pause = attempt === 1 ? 0 : Math.min(2000, 250 * 2 ** (attempt - 2)) * (0.5 + Math.random());
        this.giveUpIfLate(firstMaybeSpent, pause);
        await sleep(pause);
        continue;
      }
      if (answer.status === 200) {
        const pair = this.parsePair(answer.body, parent);
        if (pair) return { kind: "tokens", pair, attempts: attempt };
        // A 200 we cannot read was still a rotation on the server: same as a lost answer.
        firstMaybeSpent ??= startedAt;
        this.emit({ type: "lost_answer", attempt, cause: "malformed 200" });
        const pause = 1000 * (0.5 + Math.random());
        this.giveUpIfLate(firstMaybeSpent, pause);
        await sleep(pause);
        continue;
      }
      if (answer.status === 408) {
        // The request stalled on the way and the server did nothing: as if never sent. Resend at
        // once (the server closed that connection, so the resend gets a new one).
        this.emit({ type: "not_sent", attempt, cause: "408 request_timeout" });
        if (firstMaybeSpent === null && attempt >= 3) throw new OfflineError("offline: /refresh stalled");
        this.giveUpIfLate(firstMaybeSpent, 0);
        continue;
      }
      if (answer.status === 401) {
        const body = answer.body as { error?: unknown; reason?: unknown } | null;
        if (body?.error === "invalid_grant") {
          return { kind: "refused", reason: typeof body.reason === "string" ? body.reason : "invalid" };
        }
        throw new ApiError(401, errorCode(answer.body));
      }
      if (answer.status === 503) {
        // Database down: nothing was spent by this attempt. Wait as told (with jitter) and resend.
        const wait = retryAfterMs(answer.headers) + Math.random() * 500;
        this.emit({ type: "unavailable", path: "/refresh", retryAfterMs: wait });
        if (waitedFor503 + wait > this.unavailableBudgetMs) throw new UnavailableError(wait);
        this.giveUpIfLate(firstMaybeSpent, wait);
        waitedFor503 += wait;
        await sleep(wait);
        continue;
      }
      if (answer.status >= 500) {
        // A 500/502/504 may or may not have rotated (a gateway timed out on a slow server):
        // treat it as a lost answer, with a pause.
        firstMaybeSpent ??= startedAt;
        this.emit({ type: "server_error", path: "/refresh", status: answer.status });
        const pause = 1000 * (0.5 + Math.random());
        this.giveUpIfLate(firstMaybeSpent, pause);
        await sleep(pause);
        continue;
      }
      throw this.errorFor("/refresh", answer);
    }
  }

  /** Stops retrying before a retry could reach the server after its grace (it would be "stolen"). */
  private giveUpIfLate(firstMaybeSpent: number | null, nextWaitMs: number): void {
    if (firstMaybeSpent === null) return;
    if (this.clock.monotonicMs() + nextWaitMs - firstMaybeSpent > this.lostAnswerWindowMs) {
      throw new OfflineError("no answer to /refresh within the retry window; tokens kept");
    }
  }

  /** The pair of a token response; its chain is the parent's, one link longer. */
  private parsePair(body: unknown, parent?: StoredTokens): StoredTokens | null {
    const b = body as Record<string, unknown> | null;
    if (
      !b ||
      typeof b.access_token !== "string" ||
      typeof b.refresh_token !== "string" ||
      typeof b.session_id !== "string" ||
      typeof b.expires_in !== "number" ||
      typeof b.refresh_expires_in !== "number"
    ) {
      return null;
    }
    return {
      accessToken: b.access_token,
      refreshToken: b.refresh_token,
      sessionId: b.session_id,
      expiresIn: b.expires_in,
      refreshExpiresIn: b.refresh_expires_in,
      obtainedAt: this.clock.wallMs(),
      chain: [fingerprint(b.refresh_token), ...(parent?.chain ?? [])].slice(0, CHAIN_LENGTH),
    };
  }

  // ---------------------------------------------------------------------------------------------
  // HTTP

  /** POST JSON with a timeout that covers the body too; no answer becomes a NoAnswer. */
  private async post(path: string, body: unknown, timeoutMs: number): Promise<Answer> {
    // Its own controller: no caller's signal (a screen going away) may cancel an auth request.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      let res: Response;
      try {
        res = await this.fetchImpl(this.baseUrl + path, {
          method: "POST",
          headers: { "content-type": "application/json", accept: "application/json" },
          body: JSON.stringify(body),
          signal: controller.signal,
        });
      } catch (e) {
        throw new NoAnswer(!notSent(e), describe(e, controller.signal.aborted));
      }
      let text: string;
      try {
        text = await res.text();
      } catch (e) {
        // Headers arrived, the body did not: the server did the work, the answer is lost.
        throw new NoAnswer(true, describe(e, controller.signal.aborted));
      }
      let parsed: unknown = null;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        parsed = null;
      }
      return { status: res.status, headers: res.headers, body: parsed };
    } finally {
      clearTimeout(timer);
    }
  }

  private send(path: string, init: RequestInit, accessToken: string): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${accessToken}`);
    return this.fetchImpl(this.baseUrl + path, { ...init, headers });
  }

  /** One attempt; true when the server answered (204, or 400 for a bug that no retry fixes). */
  private async sendLogout(token: string): Promise<boolean> {
    try {
      const answer = await this.post("/logout", { refresh_token: token }, this.requestTimeoutMs);
      return answer.status < 500;
    } catch (e) {
      if (e instanceof NoAnswer) return false;
      throw e;
    }
  }

  private async readLogoutQueue(): Promise<string[]> {
    try {
      const text = await this.storage.get(this.logoutKey);
      const parsed: unknown = text ? JSON.parse(text) : [];
      return Array.isArray(parsed) ? parsed.filter((t): t is string => typeof t === "string") : [];
    } catch {
      return [];
    }
  }

  private errorFor(path: string, answer: Answer): Error {
    if (answer.status === 503) {
      const wait = retryAfterMs(answer.headers);
      this.emit({ type: "unavailable", path, retryAfterMs: wait });
      return new UnavailableError(wait);
    }
    if (answer.status >= 500) this.emit({ type: "server_error", path, status: answer.status });
    const retry = answer.status === 429 ? retryAfterMs(answer.headers) : undefined;
    return new ApiError(answer.status, errorCode(answer.body), retry);
  }

  private emit(event: AuthEvent): void {
    try {
      this.onEvent(event);
    } catch {
      // A metrics hook must not break authentication.
    }
  }
}

// -------------------------------------------------------------------------------------------------
// Helpers

/** Retry-After in ms (seconds or an HTTP date), at least 1 s, at most a minute. */
export function retryAfterMs(headers: Headers): number {
  const value = headers.get("retry-after");
  let seconds = value === null ? 1 : Number(value);
  if (value !== null && Number.isNaN(seconds)) {
    const date = Date.parse(value);
    seconds = Number.isNaN(date) ? 1 : (date - Date.now()) / 1000;
  }
  return Math.min(60, Math.max(1, seconds)) * 1000;
}

function isInvalidToken(res: Response): boolean {
  // RFC 6750: the challenge names the error; `missing_token` (no header sent) is a bug, not a refresh.
  return /error="invalid_token"/.test(res.headers.get("www-authenticate") ?? "");
}

async function discard(res: Response): Promise<void> {
  try {
    await res.text(); // frees the connection for reuse
  } catch {
    // nothing to free
  }
}

function errorCode(body: unknown): string {
  const error = (body as { error?: unknown } | null)?.error;
  return typeof error === "string" ? error : "unexpected_response";
}

function notSent(e: unknown): boolean {
  const cause = (e as { cause?: { code?: unknown } } | null)?.cause;
  return typeof cause?.code === "string" && NOT_SENT_CODES.has(cause.code);
}

function describe(e: unknown, timedOut: boolean): string {
  if (timedOut) return "timeout";
  const cause = (e as { cause?: { code?: unknown } } | null)?.cause;
  if (typeof cause?.code === "string") return cause.code;
  return e instanceof Error ? e.name : "network error";
}

function validPair(value: unknown): StoredTokens | null {
  const v = value as Partial<StoredTokens> | null;
  if (
    !v ||
    typeof v.accessToken !== "string" ||
    typeof v.refreshToken !== "string" ||
    typeof v.sessionId !== "string" ||
    typeof v.expiresIn !== "number" ||
    typeof v.refreshExpiresIn !== "number" ||
    typeof v.obtainedAt !== "number"
  ) {
    return null;
  }
  const chain = Array.isArray(v.chain) ? v.chain.filter((f): f is string => typeof f === "string") : [];
  const own = fingerprint(v.refreshToken);
  return { ...(v as StoredTokens), chain: chain[0] === own ? chain : [own] };
}

const CHAIN_LENGTH = 8;

/** True when `a` comes after `b` in the session's chain (or, with no link between them, arrived later). */
function isNewer(a: StoredTokens, b: StoredTokens): boolean {
  if (a.refreshToken === b.refreshToken) return false;
  if (a.chain.includes(b.chain[0] ?? "")) return true;
  if (b.chain.includes(a.chain[0] ?? "")) return false;
  // Another session (a new sign-in) or too far apart to link: the later one.
  return a.obtainedAt > b.obtainedAt;
}

/** A 53-bit non-cryptographic hash (cyrb53): tells a few tokens apart, reveals none. */
function fingerprint(token: string): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36);
}
