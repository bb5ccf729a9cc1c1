// stream / stream_options as OpenAI reads them: options only make sense on a stream.
import { ApiError } from "../api-error.ts";
import type { CommonRequest } from "./requests.ts";

export function streamOptionsOf(body: CommonRequest): { stream: boolean; includeUsage: boolean } {
  const stream = body.stream ?? false;
  if (body.stream_options != null && !stream) {
    throw new ApiError(400, "stream_options can only be set when stream is true", "stream_options");
  }
  return { stream, includeUsage: body.stream_options?.include_usage ?? false };
}
