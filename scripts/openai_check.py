"""The Python openai SDK against a running `kvc serve` (kvc-nano): logprobs, response_format
and tools, streamed and whole, each response read through the SDK's own types.
Usage: python3 scripts/openai_check.py http://127.0.0.1:8080  (exits non-zero on the first mismatch)
tests/server/openai-python.test.ts runs it against a server under Bun and under Deno."""
import json
import sys

from openai import OpenAI

client = OpenAI(base_url=f"{sys.argv[1]}/v1", api_key="unused", max_retries=0)
MODEL = "kvc-nano"
MESSAGES = [{"role": "user", "content": "Tell me about the Union."}]
SCHEMA = {"type": "object", "properties": {"party": {"enum": ["whig", "tory"]}, "ok": {"type": "boolean"}}, "required": ["party", "ok"], "additionalProperties": False}
FORMAT = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": SCHEMA}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"enum": ["paris", "rome"]}}, "required": ["city"], "additionalProperties": False}}}]


def check_answer(text):
    o = json.loads(text)
    assert sorted(o) == ["ok", "party"] and o["party"] in ("whig", "tory") and isinstance(o["ok"], bool), text


# chat logprobs, whole and streamed
whole = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3)
content = whole.choices[0].logprobs.content
assert len(content) == whole.usage.completion_tokens, content
assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 and t.bytes for t in content)
streamed = []
for chunk in client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3, stream=True):
    if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
        streamed += chunk.choices[0].logprobs.content
assert [t.token for t in streamed] == [t.token for t in content]

# completions logprobs
c = client.completions.create(model=MODEL, prompt="The President", max_tokens=5, temperature=0, logprobs=2)
lp = c.choices[0].logprobs
assert "".join(lp.tokens) == c.choices[0].text and lp.text_offset[0] == 0 and all(len(d) >= 2 for d in lp.top_logprobs)

# response_format json_schema, whole and streamed
r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=60, temperature=1, response_format=FORMAT)
assert r.choices[0].finish_reason == "stop"
check_answer(r.choices[0].message.content)
text = "".join(ch.choices[0].delta.content or "" for ch in client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=60, temperature=1, response_format=FORMAT, stream=True) if ch.choices)
check_answer(text)

# tools: required (whole), named (streamed, calls assembled from delta.tool_calls)
r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100, temperature=1, tools=TOOLS, tool_choice="required")
assert r.choices[0].finish_reason == "tool_calls"
call = r.choices[0].message.tool_calls[0]
assert call.function.name == "get_weather" and json.loads(call.function.arguments)["city"] in ("paris", "rome")
calls, finish = [], None
for ch in client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100, temperature=1, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}}, stream=True):
    if ch.choices:
        calls += ch.choices[0].delta.tool_calls or []
        finish = ch.choices[0].finish_reason or finish
assert finish == "tool_calls" and calls and all(json.loads(t.function.arguments)["city"] in ("paris", "rome") for t in calls)
print("ok")
