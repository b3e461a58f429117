// Must NOT compile (.ci/typed-errors): "emial_taken" is not a code /register answers.
import createClient from "openapi-fetch";
import type { paths } from "../build/typed-errors/api";

export async function register(email: string, password: string): Promise<string> {
  const client = createClient<paths>({ baseUrl: "https://auth.example.com" });
  const { error } = await client.POST("/register", { body: { email, password } });
  switch (error?.error) {
    case "emial_taken":
      return "sign in instead";
    default:
      return "error";
  }
}
