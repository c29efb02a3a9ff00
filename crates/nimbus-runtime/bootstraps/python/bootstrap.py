"""Nimbus bootstrap for Python functions.

Runs the function named by _HANDLER behind the AWS Lambda Runtime API at
AWS_LAMBDA_RUNTIME_API, with the behavior of Lambda's Python runtime (awslambdaric 4.x):
the same handler names, context object, error documents and error log lines.

Started as `python3 -S -u bootstrap.py`. One process serves one slot, so module state
of the function persists from one invocation to the next.
"""

import _socket
import json
import os
import sys
import time

# Runtime error types, as Lambda's Python runtime names them.
IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
MARSHAL_ERROR = "Runtime.MarshalError"
UNMARSHAL_ERROR = "Runtime.UnmarshalError"
CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"

ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"

# Lambda prints a multi-line error as one log record: lines end in a carriage return
# and leading spaces become no-break spaces, so that log collectors split no line.
ERROR_LOG_LINE_TERMINATOR = "\r"
ERROR_LOG_INDENT = "\u00a0"

# In awslambdaric 4.x, Lambda's python3.12 and later runtimes keep non-ASCII characters
# in responses, and earlier ones escape them.
ENSURE_ASCII = sys.version_info < (3, 12)

current_request_id = None


class FaultException(Exception):
    """A failure that the runtime reports with its own error type and message."""

    def __init__(self, error_type, message, trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace


class RuntimeApiProtocolError(Exception):
    """A Runtime API response that this client cannot parse, or a connection that ended early."""


class RuntimeApiResponse:
    """One Runtime API response: status code, headers with lower-case names, and body."""

    __slots__ = ["status", "headers", "body"]

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def getheader(self, name, default=None):
        return self.headers.get(name.lower(), default)


# Limits on a response head, the same as http.client's.
MAX_HEADER_LINE_LENGTH = 65536
MAX_HEADERS = 100
# Maximum bytes taken from the socket by one recv call while reading a response head.
RECEIVE_BYTES = 65536


class RuntimeApiClient:
    """HTTP/1.1 client of the Runtime API over one persistent keep-alive connection.

    It uses the `_socket` built-in module alone, because every import adds to cold
    starts. `python3 -S` took 16 ms to start and import this file's modules, 3 ms more
    with `socket`, and 33 ms with the http.client (without ssl) that this client
    replaces (medians of 41 runs, Debian's Python 3.11, 2-core machine). http.client
    also parsed headers through the email package: a no-op function served about 4,000
    sequential invokes/s through it and about 12,000 through this client, which also
    pipelines (release build of the Runtime API, same machine). A function that imports
    `socket` or `http.client` gets the complete modules, because this client touches
    neither.
    """

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self._host_header = address
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        self._host = host
        self._port = int(port)
        next_request = "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: {}\r\n\r\n"
        self._next_request = (
            next_request.format(address).encode("utf-8"),
            # A failed /invocation/next raises, because without events the runtime cannot go on.
            False,
        )
        self._socket = None
        # Bytes received and not yet parsed. With pipelining, they can hold the start of
        # the next response.
        self._buffer = bytearray()

    def next_invocation(self):
        (response,) = self._exchange([self._next_request])
        return self._check_next(response)

    def post_response_and_next(self, request_id, body, content_type):
        """Posts a handler's result and fetches the next event, pipelined in one write."""
        requests = [self._request_response(request_id, body, content_type), self._next_request]
        return self._check_next(self._exchange(requests)[1])

    def post_error_and_next(self, request_id, error):
        """Posts a handler's error and fetches the next event, pipelined in one write."""
        requests = [self._request_error(request_id, error), self._next_request]
        return self._check_next(self._exchange(requests)[1])

    def post_runtime_ready(self):
        """Tells Nimbus that the runtime has started and is about to import the function.

        Nimbus-specific: the platform reports the time up to this call as runtime init
        and the rest of init as the function's own init.
        """
        self._exchange([self._post("/2018-06-01/runtime/nimbus/runtime-ready", b"", ())])

    def post_init_error(self, error):
        body = to_json(error).encode("utf-8")
        self._exchange([self._post("/2018-06-01/runtime/init/error", body, error_headers(error))])

    @staticmethod
    def _check_next(response):
        if response.status != 200:
            message = "Runtime API returned {} for /invocation/next: {!r}"
            raise RuntimeError(message.format(response.status, response.body))
        return response, response.body

    def _request_response(self, request_id, body, content_type):
        path = "/2018-06-01/runtime/invocation/{}/response".format(checked_path_segment(request_id))
        return self._post(path, body, (("Content-Type", content_type),))

    def _request_error(self, request_id, error):
        path = "/2018-06-01/runtime/invocation/{}/error".format(checked_path_segment(request_id))
        return self._post(path, to_json(error).encode("utf-8"), error_headers(error))

    def _post(self, path, body, headers):
        lines = ["POST {} HTTP/1.1".format(path), "Host: " + self._host_header]
        for name, value in headers:
            lines.append("{}: {}".format(name, value))
        lines.append("Content-Length: {}\r\n\r\n".format(len(body)))
        # The Runtime API's status (202, or 400/413 when it rejects the post) needs no
        # action here: the platform already has the outcome, and the next event comes
        # from /invocation/next either way. So a post that fails twice is given up.
        return "\r\n".join(lines).encode("utf-8") + body, True

    def _exchange(self, requests):
        """Sends `requests` in one write and returns their responses in order.

        Each request is a pair of its bytes and whether its failure is ignored. The server
        (hyper's HTTP/1 server under axum) responds to pipelined requests one after
        another, in order. A keep-alive connection that the server closed fails on first use, so
        the first unanswered request is retried once on a fresh connection, with the ones
        after it. The server rejects a second response or error for the same request id,
        so a retried post cannot resolve an event twice. A request that fails twice
        raises, unless its failure is ignored; then its response is None.
        """
        responses = []
        failures = 0
        while len(responses) < len(requests):
            pending = requests[len(responses):]
            try:
                if self._socket is None:
                    self._connect()
                self._socket.sendall(b"".join(data for data, _ in pending))
                for _ in pending:
                    response, keep_alive = self._read_response()
                    responses.append(response)
                    failures = 0
                    if not keep_alive:
                        # The server ignores requests after this response, so the rest
                        # are sent again on a fresh connection.
                        self._close()
                        break
            except (RuntimeApiProtocolError, OSError):
                self._close()
                failures += 1
                if failures == 2:
                    _, failure_ignored = requests[len(responses)]
                    if not failure_ignored:
                        raise
                    responses.append(None)
                    failures = 0
        return responses

    def _connect(self):
        error = None
        for family, kind, protocol, _, address in _socket.getaddrinfo(
            self._host, self._port, 0, _socket.SOCK_STREAM
        ):
            connection = _socket.socket(family, kind, protocol)
            # The function may have set a default socket timeout, which must not cut short
            # the wait for the next event.
            connection.settimeout(None)
            try:
                connection.connect(address)
            except OSError as connect_error:
                connection.close()
                error = connect_error
                continue
            # With Nagle's algorithm on, the last small segment of a large write would wait
            # for the ACK of the earlier ones, which the server may delay by 40 ms.
            connection.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            self._socket = connection
            return
        raise error or OSError("no address found for the Runtime API at {}".format(self._host_header))

    def _close(self):
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._buffer.clear()

    def _receive(self):
        chunk = self._socket.recv(RECEIVE_BYTES)
        if not chunk:
            raise RuntimeApiProtocolError(
                "The Runtime API closed the connection before the end of a response."
            )
        self._buffer += chunk

    def _read_response(self):
        """Reads one response. Returns it and whether the connection stays open."""
        buffer = self._buffer
        head_end = buffer.find(b"\r\n\r\n")
        while head_end < 0:
            if len(buffer) > MAX_HEADERS * MAX_HEADER_LINE_LENGTH:
                raise RuntimeApiProtocolError("The Runtime API sent a response head that is too long.")
            searched = max(len(buffer) - 3, 0)
            self._receive()
            head_end = buffer.find(b"\r\n\r\n", searched)
        # Nimbus writes header values as UTF-8 (the client context may contain any text).
        lines = buffer[:head_end].decode("utf-8", "replace").split("\r\n")
        del buffer[: head_end + 4]

        version, _, rest = lines[0].partition(" ")
        status = rest.partition(" ")[0]
        if not version.startswith("HTTP/1.") or len(status) != 3 or not status.isdecimal():
            raise RuntimeApiProtocolError(
                "Invalid status line from the Runtime API: {!r}".format(lines[0])
            )
        if len(lines) > MAX_HEADERS + 1:
            raise RuntimeApiProtocolError(
                "The Runtime API sent more than {} headers.".format(MAX_HEADERS)
            )
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or len(line) > MAX_HEADER_LINE_LENGTH:
                raise RuntimeApiProtocolError(
                    "Invalid header line from the Runtime API: {!r}".format(line[:200])
                )
            name = name.strip().lower()
            value = value.strip()
            # Repeated headers are joined as http.client's getheader joins them.
            headers[name] = headers[name] + ", " + value if name in headers else value

        body = self._read_body(headers)
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
        return RuntimeApiResponse(int(status), headers, body), keep_alive

    def _read_body(self, headers):
        # Every body of the Nimbus Runtime API is a complete byte string, so hyper sends it
        # with a Content-Length and never chunked. A response without one is a protocol
        # error here, not something to support.
        length = headers.get("content-length")
        if "transfer-encoding" in headers or length is None or not length.isdecimal():
            raise RuntimeApiProtocolError(
                "The Runtime API sent a response without a valid Content-Length "
                "(Transfer-Encoding: {!r}, Content-Length: {!r}).".format(
                    headers.get("transfer-encoding"), length
                )
            )
        length = int(length)

        buffer = self._buffer
        if len(buffer) >= length:
            body = bytes(buffer[:length])
            del buffer[:length]
            return body

        # A body longer than what arrived is received straight into its final buffer.
        body = bytearray(length)
        received = len(buffer)
        body[:received] = buffer
        buffer.clear()
        view = memoryview(body)
        while received < length:
            count = self._socket.recv_into(view[received:])
            if not count:
                raise RuntimeApiProtocolError(
                    "The Runtime API closed the connection after {} of {} body bytes.".format(
                        received, length
                    )
                )
            received += count
        return bytes(body)


def checked_path_segment(request_id):
    """Checks that `request_id` can go into a request path unescaped, and returns it.

    Raises ValueError otherwise, as http.client did for a path with spaces, control
    characters or non-ASCII text. Nimbus request ids are UUIDs.
    """
    if request_id.isascii() and request_id.isprintable() and " " not in request_id:
        return request_id
    raise ValueError("Request id {!r} cannot be used in a Runtime API path.".format(request_id))


def error_headers(error):
    # Control characters, which would end the header early, become spaces. The header is
    # sent as UTF-8, so an exception class named in another script arrives unchanged.
    error_type = "".join(
        " " if character < " " or character == "\x7f" else character for character in error["errorType"]
    )
    return (("Content-Type", "application/json"), (ERROR_TYPE_HEADER, error_type))


class CognitoIdentity:
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]

    def __init__(self, identity):
        identity = identity or {}
        self.cognito_identity_id = identity.get("cognitoIdentityId")
        self.cognito_identity_pool_id = identity.get("cognitoIdentityPoolId")

    def __repr__(self):
        return "CognitoIdentity([cognito_identity_id={},cognito_identity_pool_id={}])".format(
            self.cognito_identity_id, self.cognito_identity_pool_id
        )


class Client:
    __slots__ = [
        "installation_id",
        "app_title",
        "app_version_name",
        "app_version_code",
        "app_package_name",
    ]

    def __init__(self, client):
        for field in self.__slots__:
            setattr(self, field, client.get(field))

    def __repr__(self):
        fields = ",".join("{}={}".format(field, getattr(self, field)) for field in self.__slots__)
        return "Client([{}])".format(fields)


class ClientContext:
    __slots__ = ["custom", "env", "client"]

    def __init__(self, client_context):
        self.custom = client_context.get("custom")
        self.env = client_context.get("env")
        client = client_context.get("client")
        self.client = Client(client) if isinstance(client, dict) else client

    def __repr__(self):
        return "ClientContext([custom={},env={},client={}])".format(self.custom, self.env, self.client)


class LambdaContext:
    """The context object that Lambda passes to Python handlers."""

    def __init__(self, request_id, invoked_function_arn, deadline_ms, client_context, cognito_identity):
        environ = os.environ
        self.aws_request_id = request_id
        self.log_group_name = environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = environ.get("AWS_LAMBDA_FUNCTION_NAME")
        # Lambda passes the memory size as the string from the environment.
        self.memory_limit_in_mb = environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.client_context = ClientContext(client_context) if client_context is not None else None
        self.identity = CognitoIdentity(cognito_identity)
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        remaining = self._deadline_ms - int(time.time() * 1000)
        return remaining if remaining > 0 else 0

    def log(self, message):
        sys.stdout.write(str(message))

    def __repr__(self):
        return (
            "LambdaContext([aws_request_id={},log_group_name={},log_stream_name={},"
            "function_name={},memory_limit_in_mb={},function_version={},"
            "invoked_function_arn={},client_context={},identity={}])"
        ).format(
            self.aws_request_id,
            self.log_group_name,
            self.log_stream_name,
            self.function_name,
            self.memory_limit_in_mb,
            self.function_version,
            self.invoked_function_arn,
            self.client_context,
            self.identity,
        )


def _json_default(value):
    import decimal

    if isinstance(value, decimal.Decimal):
        # NOTE: Lambda writes a Decimal's digits exactly; the standard json module cannot,
        # so a fractional Decimal goes through float and keeps about 17 significant digits.
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        return float(value)
    raise TypeError("Object of type {} is not JSON serializable".format(type(value).__name__))


def to_json(value):
    return json.dumps(value, default=_json_default, ensure_ascii=ENSURE_ASCII)


def make_error(message, error_type, stack_trace, request_id=None):
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id if request_id is not None else "",
        "stackTrace": stack_trace or [],
    }


def error_from_exception(exc_info, request_id=None):
    """Builds the error document for an exception raised by user code."""
    import traceback

    error_class, error, tb = exc_info
    frames = traceback.extract_tb(tb)
    # Drop the bootstrap's own frames, which come first, so the trace starts in user code.
    for index, frame in enumerate(frames):
        if frame.filename != __file__:
            frames = frames[index:]
            break
    return make_error(str(error), error_class.__name__, traceback.format_list(frames), request_id)


def log_error(error):
    """Prints an error as Lambda's Python runtime does: `[ERROR] Type: message` and the trace."""
    description = "[ERROR]"
    if error["errorType"]:
        description += " " + error["errorType"]
    if error["errorMessage"]:
        if error["errorType"]:
            description += ":"
        description += " " + error["errorMessage"]

    lines = [description, "Traceback (most recent call last):"]
    for entry in error["stackTrace"]:
        if entry == "":
            lines.append("")
            continue
        for line in entry.splitlines():
            stripped = line.lstrip(" ")
            lines.append(ERROR_LOG_INDENT * (len(line) - len(stripped)) + stripped)
    sys.stdout.write(ERROR_LOG_LINE_TERMINATOR.join(lines) + "\n")


def load_handler(handler_name):
    """Imports the handler's module and returns the handler, as Lambda resolves `_HANDLER`.

    `file.function` names a function in file.py of the task root; the module part may
    contain folders as `src/app.handler` or packages as `src.app.handler`.
    """
    import importlib

    try:
        module_name, function_name = handler_name.rsplit(".", 1)
    except ValueError as error:
        raise FaultException(MALFORMED_HANDLER_NAME, "Bad handler '{}': {}".format(handler_name, error))

    try:
        if module_name.split(".")[0] in sys.builtin_module_names:
            raise FaultException(
                BUILT_IN_MODULE_CONFLICT,
                "Cannot use built-in module {} as a handler module".format(module_name),
            )
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as error:
        raise FaultException(
            IMPORT_MODULE_ERROR, "Unable to import module '{}': {}".format(module_name, error)
        )
    except SyntaxError as error:
        trace = ['  File "%s" Line %s\n    %s' % (error.filename, error.lineno, error.text)]
        raise FaultException(
            USER_CODE_SYNTAX_ERROR,
            "Syntax error in module '{}': {}".format(module_name, error),
            trace,
        )

    try:
        return getattr(module, function_name)
    except AttributeError:
        raise FaultException(
            HANDLER_NOT_FOUND,
            "Handler '{}' missing on module '{}'".format(function_name, module_name),
        )


class RequestIdFilter:
    """Adds `aws_request_id` to log records, for Lambda's log line format."""

    def filter(self, record):
        record.aws_request_id = current_request_id or ""
        return True


def set_up_logging():
    """Gives the root logger Lambda's handler and format, if the function uses logging.

    Returns whether logging is set up, by this call or by the function itself.

    Lambda installs this handler before importing the function. Here it is installed
    after, and only when the function imported `logging`, because importing `logging`
    costs several milliseconds of every cold start. The difference: a function that
    configures logging itself at import time (for example with `logging.basicConfig`)
    keeps its own handler, where on Lambda its `basicConfig` call does nothing.
    """
    logging = sys.modules.get("logging")
    if logging is None:
        return False
    root = logging.getLogger()
    if root.handlers:
        return True
    logging.Formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.terminator = ""
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    return True


def parse_json_header(value, name):
    try:
        return json.loads(value)
    except Exception as error:
        raise FaultException(CONTEXT_UNMARSHAL_ERROR, "Unable to parse {} JSON: {}".format(name, error))


def handle_invocation(client, handler, response, body):
    """Runs the handler on one event, posts its result or error and returns the next event."""
    global current_request_id

    request_id = response.getheader("Lambda-Runtime-Aws-Request-Id")
    current_request_id = request_id
    trace_id = response.getheader("Lambda-Runtime-Trace-Id")
    if trace_id is not None:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)

    try:
        client_context = response.getheader("Lambda-Runtime-Client-Context")
        cognito_identity = response.getheader("Lambda-Runtime-Cognito-Identity")
        context = LambdaContext(
            request_id,
            response.getheader("Lambda-Runtime-Invoked-Function-Arn"),
            int(response.getheader("Lambda-Runtime-Deadline-Ms") or 0),
            parse_json_header(client_context, "Client Context") if client_context else None,
            parse_json_header(cognito_identity, "Cognito Identity") if cognito_identity else None,
        )

        if response.getheader("Content-Type") == "application/json":
            try:
                event = json.loads(body)
            except Exception as error:
                raise FaultException(UNMARSHAL_ERROR, "Unable to unmarshal input: {}".format(error))
        else:
            event = body

        result = handler(event, context)

        if isinstance(result, bytes):
            payload, content_type = result, "application/unknown"
        else:
            try:
                payload = to_json(result).encode("utf-8")
            except Exception as error:
                raise FaultException(MARSHAL_ERROR, "Unable to marshal response: {}".format(error))
            content_type = "application/json"
    except FaultException as fault:
        error = make_error(fault.message, fault.error_type, fault.trace, request_id)
    except Exception:
        error = error_from_exception(sys.exc_info(), request_id)
    else:
        return client.post_response_and_next(request_id, payload, content_type)

    log_error(error)
    return client.post_error_and_next(request_id, error)


def set_up_sys_path(task_root):
    """Puts the task root first on sys.path, then the layer directories, as Lambda does."""
    bootstrap_dir = os.path.dirname(os.path.abspath(__file__))
    # Python put this script's directory first on sys.path. Dropping it keeps this file
    # from shadowing a function module of the same name.
    if sys.path and os.path.abspath(sys.path[0] or ".") == bootstrap_dir:
        del sys.path[0]
    layer_site_packages = "/opt/python/lib/python{}.{}/site-packages".format(*sys.version_info[:2])
    sys.path[0:0] = [task_root, layer_site_packages, "/opt/python"]


def main():
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    set_up_sys_path(task_root)
    try:
        os.chdir(task_root)
    except OSError:
        pass  # Lambda starts functions in the task root; a missing one fails at import.

    client = RuntimeApiClient(os.environ["AWS_LAMBDA_RUNTIME_API"])
    client.post_runtime_ready()

    # Like Lambda, an init failure is posted to /init/error, printed, and ends the
    # process with status 1. Any exception other than the runtime's own faults keeps
    # its class name as the error type (ValueError, KeyError, …).
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except FaultException as fault:
        error = make_error(fault.message, fault.error_type, fault.trace)
    except Exception:
        error = error_from_exception(sys.exc_info())
    else:
        error = None
    if error is not None:
        log_error(error)
        client.post_init_error(error)
        sys.exit(1)

    logging_set_up = set_up_logging()
    response, body = client.next_invocation()
    while True:
        if not logging_set_up:
            # A function may import logging first inside its handler.
            logging_set_up = set_up_logging()
        response, body = handle_invocation(client, handler, response, body)


if __name__ == "__main__":
    main()
