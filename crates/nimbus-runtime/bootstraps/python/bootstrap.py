"""Nimbus bootstrap for Python functions.

Runs the function named by _HANDLER behind the AWS Lambda Runtime API at
AWS_LAMBDA_RUNTIME_API, with the behavior of Lambda's Python runtime (awslambdaric 4.x):
the same handler names, context object, error documents and error log lines.

Started as `python3 -S -u bootstrap.py`. One process serves one slot, so module state
of the function persists from one invocation to the next.
"""

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


def import_private_http_client():
    """Imports http.client without ssl support, for this bootstrap's use only.

    http.client imports ssl only to define HTTPSConnection, which the Runtime API (plain
    HTTP on loopback) does not need. Skipping ssl saved 7 to 8 ms of the 39 to 47 ms that
    `python3 -S -c "import json, http.client"` took (medians of 31 runs, Debian's Python
    3.11, 2-core machine). The module is then removed from sys.modules, so a function
    that imports http.client gets a complete one, with HTTPSConnection.
    """
    previous_ssl = sys.modules.get("ssl")
    sys.modules["ssl"] = None  # makes `import ssl` raise ImportError
    try:
        import http.client as client
    finally:
        if previous_ssl is None:
            del sys.modules["ssl"]
        else:
            sys.modules["ssl"] = previous_ssl
    del sys.modules["http.client"]
    delattr(sys.modules["http"], "client")
    return client


class RuntimeApiClient:
    """HTTP client of the Runtime API over one persistent keep-alive connection."""

    def __init__(self, address):
        self._http = import_private_http_client()
        host, _, port = address.rpartition(":")
        self._host = host
        self._port = int(port)
        self._connection = None

    def _request(self, method, path, body=None, headers=None):
        # A keep-alive connection that the server closed fails on first use, so the
        # request is retried once on a fresh connection. The server rejects a second
        # response or error for the same request id, so a retried post cannot resolve an
        # event twice.
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = self._http.HTTPConnection(self._host, self._port)
            try:
                self._connection.request(method, path, body=body, headers=headers or {})
                response = self._connection.getresponse()
                return response, response.read()
            except (self._http.HTTPException, OSError):
                self._connection.close()
                self._connection = None
                if attempt == 2:
                    raise

    def next_invocation(self):
        response, body = self._request("GET", "/2018-06-01/runtime/invocation/next")
        if response.status != 200:
            raise RuntimeError(
                "Runtime API returned {} for /invocation/next: {!r}".format(response.status, body)
            )
        return response, body

    def post_response(self, request_id, body, content_type):
        path = "/2018-06-01/runtime/invocation/{}/response".format(request_id)
        self._post(path, body, {"Content-Type": content_type})

    def post_error(self, request_id, error):
        path = "/2018-06-01/runtime/invocation/{}/error".format(request_id)
        self._post(path, to_json(error).encode("utf-8"), error_headers(error))

    def post_runtime_ready(self):
        """Tells Nimbus that the runtime has started and is about to import the function.

        Nimbus-specific: the platform reports the time up to this call as runtime init
        and the rest of init as the function's own init.
        """
        self._post("/2018-06-01/runtime/nimbus/runtime-ready", b"", {})

    def post_init_error(self, error):
        self._post("/2018-06-01/runtime/init/error", to_json(error).encode("utf-8"), error_headers(error))

    def _post(self, path, body, headers):
        # The Runtime API's status (202, or 400/413 when it rejects the post) needs no
        # action here: the platform already has the outcome, and the next event comes
        # from /invocation/next either way. A broken connection is not retried further.
        try:
            self._request("POST", path, body, headers)
        except (self._http.HTTPException, OSError):
            pass


def error_headers(error):
    # Sent as UTF-8 bytes: http.client would encode a str as Latin-1 and fail on an
    # exception class named in another script.
    return {"Content-Type": "application/json", ERROR_TYPE_HEADER: error["errorType"].encode("utf-8")}


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
    """Runs the handler on one event and posts its result or error."""
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
        client.post_response(request_id, payload, content_type)
        return

    log_error(error)
    client.post_error(request_id, error)


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
    while True:
        response, body = client.next_invocation()
        if not logging_set_up:
            # A function may import logging first inside its handler.
            logging_set_up = set_up_logging()
        handle_invocation(client, handler, response, body)


if __name__ == "__main__":
    main()
