"""A tiny OTLP/HTTP metrics receiver for the integration tests.

Decodes every POSTed ExportMetricsServiceRequest with the official generated
classes (PyPI's opentelemetry-proto; scripts/setup.sh installs it) and
prints one JSON line per request on stdout: the path, the headers, the
body's length as sent and as decoded (a gzip Content-Encoding is undone,
within MAX_BODY; any other is an error), and the request as
json_format.MessageToJson renders it, with every double quoted
as its shortest round-trip text (so a JSON reader's float parsing cannot
round it). The first line is {"listening": PORT}, printed once the socket
accepts.

    otlp_receiver.py [--port N] [--tls-cert FILE --tls-key FILE]
                     [--status CODE]

--status answers every request with that HTTP status (and logs it) instead
of 200, to test the agent's handling of refusals.
"""

import argparse
import json
import ssl
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

# Largest request body read (the agent's requests are far smaller).
MAX_BODY = 64 << 20


def quote_floats(value):
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {k: quote_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [quote_floats(v) for v in value]
    return value


# Handlers run on threads of their own: one line at a time.
STDOUT = threading.Lock()


def emit(record):
    line = json.dumps(record) + "\n"
    with STDOUT:
        sys.stdout.write(line)
        sys.stdout.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    status = 200

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        if length > MAX_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length)
        record = {
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "status": self.status,
            "body_bytes": len(body),
        }
        try:
            encoding = self.headers.get("Content-Encoding", "identity")
            if encoding == "gzip":
                gunzip = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                body = gunzip.decompress(body, MAX_BODY)
                if gunzip.unconsumed_tail or gunzip.unused_data or not gunzip.eof:
                    raise ValueError("a gzip body cut short, too large, or with bytes after it")
            elif encoding != "identity":
                raise ValueError(f"Content-Encoding {encoding!r}")
            record["decoded_bytes"] = len(body)
            request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
            record["request"] = quote_floats(json.loads(json_format.MessageToJson(request)))
        except Exception as e:  # a bad body is the agent's bug: say so
            record["error"] = repr(e)
        emit(record)
        answer = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that hung up mid-answer (an agent stopped mid-push): one
        # line, not a traceback.
        error = sys.exc_info()[1]
        sys.stderr.write(f"otlp_receiver: {client_address}: {error!r}\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--status", type=int, default=200)
    args = parser.parse_args()
    Handler.status = args.status
    server = Server(("127.0.0.1", args.port), Handler)
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    emit({"listening": server.server_address[1]})
    server.serve_forever()


if __name__ == "__main__":
    main()
