// ApiError: a failure the client should see, in OpenAI's error shape:
// {"error": {"message", "type", "param", "code"}} with an HTTP status.

export type ApiErrorType = "invalid_request_error" | "authentication_error" | "not_found_error" | "rate_limit_error" | "server_error";

const TYPE_OF_STATUS: Record<number, ApiErrorType> = { 401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error" };

export class ApiError extends Error {
  readonly type: ApiErrorType;
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    type?: ApiErrorType,
    /** extra response headers, e.g. Retry-After on 429 */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.type = type ?? TYPE_OF_STATUS[status] ?? (status >= 500 ? "server_error" : "invalid_request_error");
  }

  toJSON() {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}
