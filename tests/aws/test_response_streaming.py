"""Response streaming: InvokeWithResponseStream through boto3, and a streaming
handler (`awslambda.streamifyResponse`) called with plain Invoke.

boto3 decodes the event stream (PayloadChunk …, InvokeComplete) as the AWS
service sends it; the chunk timings show the response is passed on while the
handler is still running, not buffered to the end.
"""

import json
import time

import pytest

import lambda_helpers as h

STREAMER = '''\
export const handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  responseStream.setContentType('text/plain');
  responseStream.write('first;');
  if (event.hang) {
    setInterval(() => {}, 1000); // keeps the process busy past its timeout
    return new Promise(() => {});
  }
  await new Promise((resolve) => setTimeout(resolve, event.pause_ms ?? 0));
  responseStream.write('second;');
  if (event.fail) throw new Error('broke mid-stream');
  console.log('streamed', context.awsRequestId);
  responseStream.end('third');
});
'''

HELLO = '''\
def handler(event, context):
    return {"message": "Hello, World!"}
'''


def node_function(lambda_client, prefix, source, **kwargs):
    """Creates a Node function from `source` (index.mjs) and returns its name."""
    name = h.unique_name(prefix)
    lambda_client.create_function(
        FunctionName=name,
        Runtime="nodejs20.x",
        Role=h.ROLE_ARN,
        Handler="index.handler",
        Code={"ZipFile": h.make_zip({"index.mjs": source})},
        **kwargs,
    )
    return name


@pytest.fixture(scope="module")
def streamer(lambda_client):
    return node_function(lambda_client, "streamer", STREAMER, Timeout=2)


def stream(lambda_client, name, event, **kwargs):
    """[(seconds since the call, event)] of one InvokeWithResponseStream, and the response."""
    t0 = time.monotonic()
    resp = lambda_client.invoke_with_response_stream(
        FunctionName=name, Payload=json.dumps(event).encode(), **kwargs
    )
    events = [(time.monotonic() - t0, e) for e in resp["EventStream"]]
    return events, resp


def chunks(events):
    return b"".join(e["PayloadChunk"]["Payload"] for _, e in events if "PayloadChunk" in e)


def test_chunks_arrive_while_the_handler_runs(lambda_client, streamer):
    events, resp = stream(lambda_client, streamer, {"pause_ms": 800})
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["ExecutedVersion"] == "$LATEST"
    assert chunks(events) == b"first;second;third"
    assert "InvokeComplete" in events[-1][1]
    assert events[-1][1]["InvokeComplete"].get("ErrorCode") is None
    first = next(t for t, e in events if "PayloadChunk" in e)
    # The first chunk left before the handler's pause; a buffered answer would
    # bring everything together at the end.
    assert events[-1][0] - first >= 0.5, events


def test_a_failure_after_streaming_began_ends_with_its_error(lambda_client, streamer):
    events, _ = stream(lambda_client, streamer, {"fail": True})
    assert chunks(events) == b"first;second;"
    complete = events[-1][1]["InvokeComplete"]
    assert complete["ErrorCode"] == "Error"
    assert complete["ErrorDetails"] == "broke mid-stream"


def test_a_timeout_after_streaming_began_ends_the_stream_with_it(lambda_client, streamer):
    events, _ = stream(lambda_client, streamer, {"hang": True})
    assert chunks(events) == b"first;"
    assert events[-1][1]["InvokeComplete"]["ErrorCode"] == "Sandbox.Timedout"
    # The next call gets a fresh instance and streams normally.
    events, _ = stream(lambda_client, streamer, {})
    assert chunks(events) == b"first;second;third"


def test_log_tail_comes_with_invoke_complete(lambda_client, streamer):
    events, _ = stream(lambda_client, streamer, {}, LogType="Tail")
    import base64

    log = base64.b64decode(events[-1][1]["InvokeComplete"]["LogResult"]).decode()
    assert "START RequestId:" in log and "streamed" in log and "REPORT RequestId:" in log


def test_plain_invoke_of_a_streaming_handler_is_buffered(lambda_client, streamer):
    resp = lambda_client.invoke(FunctionName=streamer, Payload=b"{}")
    assert "FunctionError" not in resp
    assert resp["Payload"].read() == b"first;second;third"
    assert resp["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "text/plain"
    resp = lambda_client.invoke(FunctionName=streamer, Payload=b'{"fail": true}')
    assert resp["FunctionError"] == "Unhandled"
    doc = json.loads(resp["Payload"].read())
    assert (doc["errorType"], doc["errorMessage"]) == ("Error", "broke mid-stream")


def test_a_buffered_function_streams_its_whole_response(lambda_client, create_function):
    name = create_function(zip_bytes=h.make_zip({"app.py": HELLO})).name
    events, resp = stream(lambda_client, name, {})
    assert resp["ExecutedVersion"] == "$LATEST"
    assert json.loads(chunks(events)) == {"message": "Hello, World!"}
    assert [list(e) for _, e in events] == [["PayloadChunk"], ["InvokeComplete"]]


def test_errors_before_the_function_runs_are_plain_errors(lambda_client):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as e:
        lambda_client.invoke_with_response_stream(FunctionName="no-such-function", Payload=b"{}")
    assert h.error_code(e.value) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        lambda_client.invoke_with_response_stream(
            FunctionName="no-such-function", Payload=b"{}", InvocationType="Event"
        )
    assert h.error_code(e.value) == "ValidationException"


URL_STREAMER = '''\
export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
  const q = event.queryStringParameters ?? {};
  if (q.mode === 'badprelude') {
    // A prelude that is not JSON, then more than the gateway queues.
    responseStream.setContentType('application/vnd.awslambda.http-integration-response');
    responseStream.write('not json');
    responseStream.write(new Uint8Array(8));
    for (let i = 0; i < 64; i++) {
      responseStream.write('x'.repeat(1024));
      await new Promise((resolve) => setImmediate(resolve));
    }
    responseStream.end();
    return;
  }
  if (q.mode !== 'plain') {
    responseStream = awslambda.HttpResponseStream.from(responseStream, {
      statusCode: 201,
      headers: { 'x-kind': 'stream', 'content-type': 'text/plain' },
      cookies: ['a=1; Path=/'],
    });
  } else {
    responseStream.setContentType('text/csv');
  }
  responseStream.write('first;');
  await new Promise((resolve) => setTimeout(resolve, Number(q.pause_ms ?? 0)));
  responseStream.write('second;');
  if (q.fail) throw new Error('broke mid-stream');
  responseStream.end('third');
});
'''


def url_get(url, allow_cut=False):
    """(status, headers, [(seconds since the request, bytes)]) read as the body
    arrives; with `allow_cut`, a response cut off midway ends the list with
    (time, None) instead of raising."""
    import http.client
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    t0 = time.monotonic()
    conn.request("GET", u.path + ("?" + u.query if u.query else ""))
    resp = conn.getresponse()
    pieces = []
    try:
        while True:
            try:
                data = resp.read1(65536)
            except http.client.IncompleteRead as e:
                if not allow_cut:
                    raise
                if e.partial:
                    pieces.append((time.monotonic() - t0, e.partial))
                pieces.append((time.monotonic() - t0, None))
                break
            if not data:
                break
            pieces.append((time.monotonic() - t0, data))
    finally:
        conn.close()
    return resp.status, resp.headers, pieces


@pytest.fixture(scope="module")
def stream_url(lambda_client):
    name = node_function(lambda_client, "urlstream", URL_STREAMER)
    created = lambda_client.create_function_url_config(
        FunctionName=name, AuthType="NONE", InvokeMode="RESPONSE_STREAM"
    )
    assert created["InvokeMode"] == "RESPONSE_STREAM"
    assert lambda_client.get_function_url_config(FunctionName=name)["InvokeMode"] == "RESPONSE_STREAM"
    return created["FunctionUrl"]


def test_a_response_stream_url_sends_the_prelude_head_then_chunks_as_written(stream_url):
    status, headers, pieces = url_get(stream_url + "?pause_ms=800")
    assert status == 201
    assert headers["x-kind"] == "stream"
    assert headers["Content-Type"] == "text/plain"
    assert headers["Set-Cookie"] == "a=1; Path=/"
    assert headers["Transfer-Encoding"] == "chunked"
    assert headers["x-amzn-RequestId"]
    assert b"".join(p for _, p in pieces) == b"first;second;third"
    # 'first;' was on the wire while the handler waited.
    assert pieces[0][1].startswith(b"first;")
    assert pieces[-1][0] - pieces[0][0] >= 0.5, pieces


def test_without_a_prelude_the_stream_is_the_body_of_a_200(stream_url):
    status, headers, pieces = url_get(stream_url + "?mode=plain")
    assert status == 200
    assert headers["Content-Type"] == "text/csv"
    assert b"".join(p for _, p in pieces) == b"first;second;third"


def test_an_unusable_prelude_is_an_error_answered_at_once(stream_url):
    # The gateway drops the rest of the stream, so the function finishes at
    # once instead of waiting on a full queue until its timeout (3 s).
    t0 = time.monotonic()
    status, _, pieces = url_get(stream_url + "?mode=badprelude")
    # As for any response the payload rules cannot map (HTTP APIs answer 500).
    assert status == 500
    assert json.loads(b"".join(p for _, p in pieces)) == {"message": "Internal Server Error"}
    assert time.monotonic() - t0 < 2.0


def test_a_failure_after_the_head_cuts_the_response_off(stream_url):
    status, _, pieces = url_get(stream_url + "?fail=1", allow_cut=True)
    assert status == 201
    assert pieces[-1][1] is None, "the chunked body must not end cleanly"
    assert b"".join(p for _, p in pieces[:-1]) == b"first;second;"


def test_a_client_that_leaves_mid_stream_does_not_break_the_function(lambda_client, stream_url):
    import http.client
    import urllib.parse

    # One instance at most: the calls below can only run once the abandoned
    # invocation has finished and given its instance back.
    name = lambda_client.list_functions()["Functions"]
    name = next(f["FunctionName"] for f in name if f["FunctionName"].startswith("urlstream"))
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)

    u = urllib.parse.urlsplit(stream_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request("GET", u.path + "?pause_ms=700")
    resp = conn.getresponse()
    assert resp.status == 201
    assert resp.read1(65536).startswith(b"first;")
    conn.close()  # gone before 'second;'
    # The function runs on without its client (0.7 s) and frees the instance
    # well before its 3 s timeout would.
    deadline = time.monotonic() + 2.5
    while True:
        status, _, pieces = url_get(stream_url)
        if status != 429 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 201
    assert b"".join(p for _, p in pieces) == b"first;second;third"


def test_a_buffered_function_on_a_response_stream_url_is_mapped_as_usual(lambda_client, create_function):
    name = create_function(zip_bytes=h.make_zip({"app.py": HELLO})).name
    url = lambda_client.create_function_url_config(
        FunctionName=name, AuthType="NONE", InvokeMode="RESPONSE_STREAM"
    )["FunctionUrl"]
    status, headers, pieces = url_get(url)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(b"".join(p for _, p in pieces)) == {"message": "Hello, World!"}
    # Back to BUFFERED with an update.
    updated = lambda_client.update_function_url_config(FunctionName=name, InvokeMode="BUFFERED")
    assert updated["InvokeMode"] == "BUFFERED"
    assert lambda_client.get_function_url_config(FunctionName=name)["InvokeMode"] == "BUFFERED"
