// Compiled against the types openapi-typescript generates from openapi/openapi.json (.ci/typed-errors):
// an app switches on the error codes and refresh reasons the document lists, and the switches are
// exhaustive (a code added to a response without a case here is a compile error).
import createClient from "openapi-fetch";
import type { components, paths } from "../build/typed-errors/api";

type ErrorOf<P extends keyof paths, M extends keyof paths[P], S extends number> = paths[P][M] extends {
  responses: { [K in S]: { content: { "application/json": infer B } } };
}
  ? B
  : never;

function unreachable(value: never): never {
  throw new Error(`unexpected ${String(value)}`);
}

export function loginRefused(body: ErrorOf<"/login", "post", 401>): string {
  switch (body.error) {
    case "invalid_credentials":
      return "wrong email or password";
    default:
      return unreachable(body.error);
  }
}

export function registerRefused(body: ErrorOf<"/register", "post", 422>): string {
  switch (body.error) {
    case "invalid_email":
      return "check the address";
    case "weak_password":
      return "choose a longer password";
    default:
      return unreachable(body.error);
  }
}

// `reason` is required on /refresh's 401, and typed.
export function signOutAfterRefresh(body: ErrorOf<"/refresh", "post", 401>): boolean {
  switch (body.reason) {
    case "superseded":
      return false;
    case "expired":
    case "revoked":
    case "reuse_detected":
    case "invalid":
      return true;
    default:
      return unreachable(body.reason);
  }
}

// Bearer routes: the RFC 6750 pair, and /password's own code beside it.
export function passwordRefused(body: ErrorOf<"/password", "post", 401>): string {
  switch (body.error) {
    case "missing_token":
    case "invalid_token":
      return "refresh, then retry";
    case "invalid_credentials":
      return "the current password is wrong";
    default:
      return unreachable(body.error);
  }
}

// Every code of the API (the `default` answer of every operation).
export function anyError(code: components["schemas"]["Error"]["error"]): number {
  switch (code) {
    case "internal_error":
      return 500;
    case "unavailable":
      return 503;
    default:
      return 0;
  }
}

// openapi-fetch: `error` is the union of the operation's error bodies.
export async function register(email: string, password: string): Promise<string> {
  const client = createClient<paths>({ baseUrl: "https://auth.example.com" });
  const { data, error } = await client.POST("/register", { body: { email, password } });
  if (data) return data.role === "admin" ? "admin" : data.created_at;
  switch (error?.error) {
    case "email_taken":
      return "sign in instead";
    case "too_many_requests":
    case "unavailable":
      return "retry later";
    default:
      return "error";
  }
}

// Fields always sent are required (nullable ones typed `string | null`), constants are literals.
export async function devices(token: string): Promise<string[]> {
  const client = createClient<paths>({ baseUrl: "https://auth.example.com" });
  const { data } = await client.GET("/sessions", { headers: { Authorization: `Bearer ${token}` } });
  return (data?.sessions ?? []).map((s) => `${s.device_name ?? "unnamed"} ${s.user_agent ?? ""}`);
}

export const bearer: components["schemas"]["TokenResponse"]["token_type"] = "Bearer";
