"""An Outpost guest in Python: plain `wasi:http/proxy`, built with componentize-py.

`/origin/PATH` fetches `PATH` from the backend named `origin` (through the node's edge
cache) and answers with its body reversed; anything else is answered here.
"""
from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import outgoing_handler
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    IncomingResponse,
    Method_Get,
    OutgoingBody,
    OutgoingRequest,
    OutgoingResponse,
    ResponseOutparam,
    Scheme_Http,
)

ORIGIN_PREFIX = "/origin"


def fetch_from_origin(path: str) -> IncomingResponse:
    """GET http://origin<path>; the node maps the authority to the backend of that name."""
    request = OutgoingRequest(Fields())
    request.set_method(Method_Get())
    request.set_scheme(Scheme_Http())
    request.set_authority("origin")
    request.set_path_with_query(path)
    pending = outgoing_handler.handle(request, None)
    pending.subscribe().block()
    outcome = pending.get()
    # get() -> option<result<result<incoming-response, error-code>>>
    if outcome is None or isinstance(outcome, Err) or isinstance(outcome.value, Err):
        raise RuntimeError(f"fetching {path} from origin failed: {outcome}")
    return outcome.value.value


def read_body(response: IncomingResponse) -> bytes:
    body = response.consume()
    stream = body.stream()
    chunks = []
    while True:
        stream.subscribe().block()
        try:
            chunks.append(stream.read(64 * 1024))
        except Err as error:
            if isinstance(error.value, StreamError_Closed):
                break
            raise
    stream.__exit__(None, None, None)
    return b"".join(chunks)


def respond(out: ResponseOutparam, status: int, body: bytes) -> None:
    headers = Fields.from_list(
        [("content-type", b"text/plain"), ("x-guest-language", b"python")]
    )
    response = OutgoingResponse(headers)
    response.set_status_code(status)
    response_body = response.body()
    ResponseOutparam.set(out, Ok(response))
    stream = response_body.write()
    stream.blocking_write_and_flush(body)
    stream.__exit__(None, None, None)
    OutgoingBody.finish(response_body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        if path.startswith(ORIGIN_PREFIX + "/"):
            upstream = fetch_from_origin(path[len(ORIGIN_PREFIX):])
            respond(response_out, upstream.status(), read_body(upstream)[::-1])
        else:
            respond(response_out, 200, f"hello from python, you asked for {path}\n".encode())
