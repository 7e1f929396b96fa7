"""The providers' official SDKs against `signalbox emulate`: the Anthropic SDK, google-genai,
boto3 (bedrock-runtime, SigV4-signed) and the OpenAI SDK's AzureOpenAI client. Each parses the
emulator's replies with the real clients' own code, so a passing test proves the emulator speaks
each wire format well enough for those clients, errors and in-band stream errors included.

Knobs ride in the model string; Gemini and Bedrock carry it in the URL, so it is given
percent-encoded to google-genai (which refuses a raw `?` in a model name) and raw to boto3 (which
encodes the label itself)."""
import json
import subprocess
import urllib.error
import urllib.request

import anthropic
import boto3
import openai
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from conftest import binary, free_port, stop, wait_port

KEY = "sk-emulator-sdk"
AWS_KEY_ID = "AKIDEXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


@pytest.fixture(scope="module")
def emu():
    port = free_port()
    proc = subprocess.Popen(
        [binary(), "emulate", "--listen", f"127.0.0.1:{port}", "--api-key", KEY, "--name", "sdk"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, "emulator")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def stats(base):
    with urllib.request.urlopen(f"{base}/_emulator/stats") as r:
        return json.load(r)


WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


# --- Anthropic -------------------------------------------------------------------------------

@pytest.fixture
def claude(emu):
    return anthropic.Anthropic(base_url=emu, api_key=KEY, max_retries=0)


ANTHROPIC_TOOL = {"name": "get_weather", "description": "Weather for a city", "input_schema": WEATHER_SCHEMA}


def test_anthropic_non_stream(claude, emu):
    m = claude.messages.create(model="claude-x", max_tokens=64,
                               messages=[{"role": "user", "content": "Say hello"}])
    assert m.content[0].type == "text"
    assert m.content[0].text.startswith("Hello from sdk")
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens > 0 and m.usage.output_tokens == 16
    s = stats(emu)
    assert s["last_path"] == "/v1/messages"
    assert "anthropic-version" in s["last_headers_seen"]
    assert s["last_request"]["max_tokens"] == 64


def test_anthropic_stream(claude):
    with claude.messages.stream(model="claude-x?tokens=5", max_tokens=64,
                                messages=[{"role": "user", "content": "Say hello"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Hello from sdk: word1 word2"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5


def test_anthropic_tool_use_round_trip(claude):
    first = claude.messages.create(model="claude-x", max_tokens=64, tools=[ANTHROPIC_TOOL],
                                   messages=[{"role": "user", "content": "Weather in Paris?"}])
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert call.type == "tool_use" and call.id.startswith("toolu_")
    assert call.input == {"city": "Paris"}
    # The SDK reassembles streamed input_json_delta fragments into the same input.
    with claude.messages.stream(model="claude-x", max_tokens=64, tools=[ANTHROPIC_TOOL],
                                messages=[{"role": "user", "content": "Weather in Paris?"}]) as s:
        streamed = s.get_final_message()
    assert streamed.content[-1].input == {"city": "Paris"}
    second = claude.messages.create(model="claude-x", max_tokens=64, tools=[ANTHROPIC_TOOL], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [c.model_dump(exclude_none=True) for c in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "21C"}]},
    ])
    assert second.content[0].text == "The tool said: 21C"


def test_anthropic_thinking(claude):
    m = claude.messages.create(model="claude-x", max_tokens=2048,
                               thinking={"type": "enabled", "budget_tokens": 1024},
                               messages=[{"role": "user", "content": "Say hello"}])
    assert [b.type for b in m.content] == ["thinking", "text"]
    assert m.content[0].signature


def test_anthropic_errors(claude):
    with pytest.raises(anthropic.OverloadedError):
        claude.messages.create(model="claude-x?status=529", max_tokens=8,
                               messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(model="claude-x?status=429", max_tokens=8,
                               messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.BadRequestError, match="unexpected `tool_use_id`"):
        claude.messages.create(model="claude-x", max_tokens=8, tools=[ANTHROPIC_TOOL], messages=[
            {"role": "user", "content": "w?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "x"}]},
        ])
    with pytest.raises(anthropic.BadRequestError, match="Unexpected role \"system\""):
        claude.messages.create(model="claude-x", max_tokens=8, messages=[
            {"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
    with pytest.raises(anthropic.AuthenticationError):
        claude.with_options(api_key="wrong").messages.create(
            model="claude-x", max_tokens=8, messages=[{"role": "user", "content": "hi"}])


def test_anthropic_in_band_error(claude):
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        with claude.messages.stream(model="claude-x?error_event=2", max_tokens=64,
                                    messages=[{"role": "user", "content": "hi"}]) as s:
            for _ in s.text_stream:
                pass


# --- Gemini ----------------------------------------------------------------------------------

@pytest.fixture
def gemini(emu):
    return genai.Client(api_key=KEY, http_options={"base_url": emu})


def test_gemini_non_stream(gemini, emu):
    r = gemini.models.generate_content(model="gemini-2.5-flash", contents="Say hello")
    assert r.text.startswith("Hello from sdk")
    assert r.candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert r.usage_metadata.candidates_token_count == 16
    assert r.usage_metadata.total_token_count == r.usage_metadata.prompt_token_count + 16
    s = stats(emu)
    assert s["last_path"].endswith("/models/gemini-2.5-flash:generateContent")
    assert "x-goog-api-key" in s["last_headers_seen"]


def test_gemini_stream(gemini):
    chunks = list(gemini.models.generate_content_stream(
        model="gemini-2.5-flash%3Ftokens%3D4", contents="Say hello"))
    assert "".join(c.text for c in chunks) == "Hello from sdk: word1"
    assert len(chunks) == 4
    assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == 4


def test_gemini_tool_use_round_trip(gemini):
    tool = genai_types.Tool(function_declarations=[genai_types.FunctionDeclaration(
        name="get_weather", description="Weather for a city", parameters_json_schema=WEATHER_SCHEMA)])
    config = genai_types.GenerateContentConfig(
        tools=[tool], automatic_function_calling=genai_types.AutomaticFunctionCallingConfig(disable=True))
    first = gemini.models.generate_content(model="gemini-2.5-flash", contents="Weather in Paris?", config=config)
    call = first.function_calls[0]
    assert (call.name, call.args) == ("get_weather", {"city": "Paris"})
    second = gemini.models.generate_content(model="gemini-2.5-flash", config=config, contents=[
        genai_types.Content(role="user", parts=[genai_types.Part(text="Weather in Paris?")]),
        first.candidates[0].content,
        genai_types.Content(role="user", parts=[genai_types.Part.from_function_response(
            name="get_weather", response={"temp": 21})]),
    ])
    assert second.text == 'The tool said: {"temp":21}'


def test_gemini_thinking(gemini):
    r = gemini.models.generate_content(
        model="gemini-2.5-flash", contents="Say hello",
        config=genai_types.GenerateContentConfig(
            thinking_config=genai_types.ThinkingConfig(include_thoughts=True)))
    parts = r.candidates[0].content.parts
    assert parts[0].thought is True
    assert r.usage_metadata.thoughts_token_count > 0


def test_gemini_errors(gemini):
    with pytest.raises(genai_errors.ClientError) as e:
        gemini.models.generate_content(model="gemini-2.5-flash%3Fstatus%3D429", contents="hi")
    assert (e.value.code, e.value.status) == (429, "RESOURCE_EXHAUSTED")
    with pytest.raises(genai_errors.ServerError) as e:
        gemini.models.generate_content(model="gemini-2.5-flash%3Fstatus%3D503", contents="hi")
    assert e.value.status == "UNAVAILABLE"
    with pytest.raises(genai_errors.ClientError, match="function response turn"):
        gemini.models.generate_content(model="gemini-2.5-flash", contents=[
            genai_types.Content(role="user", parts=[genai_types.Part.from_function_response(
                name="get_weather", response={"temp": 21})])])
    bad = genai.Client(api_key="wrong", http_options={"base_url": gemini._api_client._http_options.base_url})
    with pytest.raises(genai_errors.ClientError) as e:
        bad.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert e.value.code == 400 and "API key not valid" in e.value.message


def test_gemini_in_band_error(gemini):
    got = []
    with pytest.raises(genai_errors.ServerError) as e:
        for chunk in gemini.models.generate_content_stream(
                model="gemini-2.5-flash%3Ferror_event%3D2", contents="hi"):
            got.append(chunk.text)
    assert got == ["Hello ", "from "]
    assert e.value.status == "UNAVAILABLE"


# --- Bedrock ---------------------------------------------------------------------------------

def bedrock_client(base, secret=AWS_SECRET):
    return boto3.client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=base,
        aws_access_key_id=AWS_KEY_ID, aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


@pytest.fixture
def bedrock(emu):
    return bedrock_client(emu)


HELLO = [{"role": "user", "content": [{"text": "Say hello"}]}]
BEDROCK_TOOLS = {"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather for a city",
                                         "inputSchema": {"json": WEATHER_SCHEMA}}}]}


def test_bedrock_converse(bedrock, emu):
    r = bedrock.converse(modelId="anthropic.claude-3-haiku-20240307-v1:0", messages=HELLO)
    assert r["output"]["message"]["content"][0]["text"].startswith("Hello from sdk")
    assert r["stopReason"] == "end_turn"
    assert r["usage"]["outputTokens"] == 16
    s = stats(emu)
    assert s["by_model"]["anthropic.claude-3-haiku-20240307-v1:0"] >= 1
    assert s["last_path"] == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    assert "authorization" in s["last_headers_seen"] and "x-amz-date" in s["last_headers_seen"]


def test_bedrock_converse_stream(bedrock):
    r = bedrock.converse_stream(modelId="anthropic.claude-x?tokens=4&cached_tokens=8", messages=HELLO)
    events = list(r["stream"])
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == "Hello from sdk: word1"
    assert events[0] == {"messageStart": {"role": "assistant"}}
    stop = [e["messageStop"] for e in events if "messageStop" in e]
    assert stop == [{"stopReason": "end_turn"}]
    usage = events[-1]["metadata"]["usage"]
    assert usage["outputTokens"] == 4 and usage["cacheReadInputTokens"] == 8


def test_bedrock_tool_use_round_trip(bedrock):
    first = bedrock.converse(modelId="anthropic.claude-x", messages=[
        {"role": "user", "content": [{"text": "Weather in Paris?"}]}], toolConfig=BEDROCK_TOOLS)
    assert first["stopReason"] == "tool_use"
    use = first["output"]["message"]["content"][-1]["toolUse"]
    assert (use["name"], use["input"]) == ("get_weather", {"city": "Paris"})
    events = list(bedrock.converse_stream(modelId="anthropic.claude-x", messages=[
        {"role": "user", "content": [{"text": "Weather in Paris?"}]}], toolConfig=BEDROCK_TOOLS)["stream"])
    start = [e["contentBlockStart"]["start"]["toolUse"] for e in events if "contentBlockStart" in e]
    assert start[0]["name"] == "get_weather"
    args = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"]
                   for e in events if "contentBlockDelta" in e)
    assert json.loads(args) == {"city": "Paris"}
    second = bedrock.converse(modelId="anthropic.claude-x", toolConfig=BEDROCK_TOOLS, messages=[
        {"role": "user", "content": [{"text": "Weather in Paris?"}]},
        first["output"]["message"],
        {"role": "user", "content": [{"toolResult": {"toolUseId": use["toolUseId"],
                                                     "content": [{"text": "21C"}]}}]},
    ])
    assert second["output"]["message"]["content"][0]["text"] == "The tool said: 21C"


def test_bedrock_errors(bedrock, emu):
    with pytest.raises(bedrock.exceptions.ThrottlingException):
        bedrock.converse(modelId="anthropic.claude-x?status=429", messages=HELLO)
    with pytest.raises(bedrock.exceptions.ServiceUnavailableException):
        bedrock.converse(modelId="anthropic.claude-x?status=503", messages=HELLO)
    with pytest.raises(bedrock.exceptions.ValidationException, match="does not match any toolUse"):
        bedrock.converse(modelId="anthropic.claude-x", toolConfig=BEDROCK_TOOLS, messages=[
            {"role": "user", "content": [{"text": "w?"}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather",
                                                           "input": {"city": "Paris"}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_2",
                                                         "content": [{"text": "x"}]}}]},
        ])
    with pytest.raises(ClientError) as e:
        bedrock_client(emu, secret="not-the-secret").converse(modelId="anthropic.claude-x", messages=HELLO)
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "signature we calculated does not match" in e.value.response["Error"]["Message"]


def test_bedrock_in_band_throttling(bedrock):
    # Bedrock throttles after its 200: `inband_status` answers so.
    r = bedrock.converse_stream(modelId="anthropic.claude-x?status=429&inband_status=1", messages=HELLO)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(EventStreamError) as e:
        list(r["stream"])
    assert e.value.response["Error"]["Code"] == "throttlingException"
    r = bedrock.converse_stream(modelId="anthropic.claude-x?error_event=1", messages=HELLO)
    seen = []
    with pytest.raises(EventStreamError) as e:
        for event in r["stream"]:
            seen.append(event)
    assert e.value.response["Error"]["Code"] == "serviceUnavailableException"
    assert [list(ev) for ev in seen] == [["messageStart"], ["contentBlockDelta"]]


# --- Azure OpenAI ----------------------------------------------------------------------------

@pytest.fixture
def azure(emu):
    return openai.AzureOpenAI(azure_endpoint=emu, api_key=KEY, api_version="2024-10-21", max_retries=0)


def test_azure(azure, emu):
    r = azure.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Say hello"}])
    assert r.choices[0].message.content.startswith("Hello from sdk")
    assert r.model_extra["prompt_filter_results"][0]["prompt_index"] == 0
    s = stats(emu)
    assert s["last_path"] == "/openai/deployments/gpt-4o/chat/completions"
    assert "api-key" in s["last_headers_seen"]
    stream = azure.chat.completions.create(model="gpt-4o?tokens=3", stream=True,
                                           messages=[{"role": "user", "content": "Say hello"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello from sdk:"
    with pytest.raises(openai.RateLimitError):
        azure.chat.completions.create(model="gpt-4o?status=429", messages=[{"role": "user", "content": "hi"}])
    req = urllib.request.Request(f"{emu}/openai/deployments/gpt-4o/chat/completions",
                                 data=b'{"messages":[]}', headers={"api-key": KEY}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 404
    assert json.load(e.value) == {"error": {"code": "404", "message": "Resource not found"}}
