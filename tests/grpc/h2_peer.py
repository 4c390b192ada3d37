"""An independent HTTP/2 client against our gRPC server: python-hyper's h2 state machine (Debian
python3-h2), hyperframe and hpack.

Usage: h2_peer.py PORT [CASE...]. Runs each case (all when none is named) on a fresh connection to
127.0.0.1:PORT and prints one JSON line per case with what it observed, e.g.
{"case": "echo", "status": "200", "grpc_status": "0", "echoed": [...]} or, for a case that breaks
the protocol on purpose, {"case": ..., "reset": [stream, error_code]} / {"goaway": error_code}.
A frame from the server that h2's state machine rejects shows up as {"error": "..."}.

The server is the test's echo method (`/test.Echo/Chat`: every message answered with itself) and
blob method (`/test.Blob/Get`: a 4-byte message N asks for N bytes back).

Valid traffic goes through h2.connection.H2Connection, whose validation of what the server sends
(frames, stream states, flow control, response headers and trailers) is on. Header-level
violations are sent by an H2Connection whose own outbound validation is switched off; frame-level
violations are written as raw frames (hyperframe, hpack) and the answers parsed with hyperframe.
"""

import json
import socket
import struct
import sys

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
from hyperframe.frame import Frame

ECHO = "/test.Echo/Chat"
BLOB = "/test.Blob/Get"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
TIMEOUT = 5


def grpc_message(payload):
    return struct.pack(">BI", 0, len(payload)) + payload


def request_headers(path=ECHO, extra=()):
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "127.0.0.1"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *extra,
    ]


class Peer:
    """An h2 client connection, and the events it has seen per stream."""

    def __init__(self, port, validate_outbound=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding="utf-8",
            validate_outbound_headers=validate_outbound,
            normalize_outbound_headers=validate_outbound,
        )
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.flush()
        self.streams = {}
        self.terminated = None
        self.pings = 0

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def stream(self, sid):
        return self.streams.setdefault(
            sid, {"headers": None, "data": b"", "trailers": None, "ended": False, "reset": None}
        )

    def pump(self, done):
        """Reads and handles events until done() or the connection ends."""
        while not done():
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            for ev in self.conn.receive_data(chunk):
                self.handle(ev)
            self.flush()

    def handle(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            self.stream(ev.stream_id)["headers"] = dict(ev.headers)
        elif isinstance(ev, h2.events.DataReceived):
            self.stream(ev.stream_id)["data"] += ev.data
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            self.stream(ev.stream_id)["trailers"] = dict(ev.headers)
        elif isinstance(ev, h2.events.StreamEnded):
            self.stream(ev.stream_id)["ended"] = True
        elif isinstance(ev, h2.events.StreamReset):
            self.stream(ev.stream_id)["reset"] = int(ev.error_code)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.terminated = int(ev.error_code)
        elif isinstance(ev, h2.events.PingAckReceived):
            self.pings += 1

    def finished(self, sid):
        s = self.stream(sid)
        return s["ended"] or s["reset"] is not None or self.terminated is not None

    def send_all(self, sid, data, end_stream):
        """Sends `data` within the flow-control windows the server grants."""
        while data:
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window <= 0:
                before = self.conn.local_flow_control_window(sid)
                self.pump(lambda: self.conn.local_flow_control_window(sid) > before)
                continue
            self.conn.send_data(sid, data[:window])
            data = data[window:]
            self.flush()
        if end_stream:
            self.conn.end_stream(sid)
            self.flush()

    def call(self, path, messages, extra=(), end=True):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, request_headers(path, extra))
        self.flush()
        for m in messages:
            self.send_all(sid, grpc_message(m), False)
        if end:
            self.conn.end_stream(sid)
            self.flush()
        return sid

    def result(self, sid):
        s = self.stream(sid)
        status = (s["trailers"] or s["headers"] or {}).get("grpc-status")
        return {
            "status": (s["headers"] or {}).get(":status"),
            "grpc_status": status,
            "bytes": len(s["data"]),
            "reset": s["reset"],
        }

    def close(self):
        try:
            self.conn.close_connection()
            self.flush()
        except Exception:
            pass
        self.sock.close()


def messages_of(data):
    out = []
    while len(data) >= 5:
        n = struct.unpack(">I", data[1:5])[0]
        out.append(list(data[5 : 5 + n]))
        data = data[5 + n :]
    return out


# ---- valid traffic, checked by h2's state machine ----


def case_echo(port):
    p = Peer(port)
    sid = p.call(ECHO, [b"\x01", b"\x02\x03", b"hello"])
    p.pump(lambda: p.finished(sid))
    s = p.stream(sid)
    p.close()
    return {**p.result(sid), "echoed": messages_of(s["data"]), "trailers": s["trailers"]}


def case_concurrent(port):
    """25 calls at once on one connection, then 1 MiB down and 300 KB up through the windows."""
    p = Peer(port)
    sids = [p.call(ECHO, [bytes([i + 1]) * (i + 1)]) for i in range(25)]
    p.pump(lambda: all(p.finished(s) for s in sids))
    ok = [p.result(s)["grpc_status"] == "0" and messages_of(p.stream(s)["data"]) == [[i + 1] * (i + 1)]
          for i, s in enumerate(sids)]
    down = p.call(BLOB, [struct.pack(">I", 1 << 20)])
    p.pump(lambda: p.finished(down))
    up = p.call(BLOB, [b"\x07" * 300_000])
    p.pump(lambda: p.finished(up))
    p.close()
    return {
        "all_ok": all(ok),
        "down": p.result(down),
        "up": {**p.result(up), "echoed": messages_of(p.stream(up)["data"])},
    }


def case_refusals(port):
    """Unknown method (Trailers-Only UNIMPLEMENTED), a PING, and a client reset."""
    p = Peer(port)
    unknown = p.call("/test.Nope/Chat", [b"\x01"])
    p.pump(lambda: p.finished(unknown))
    p.conn.ping(b"h2-peer!")
    p.flush()
    p.pump(lambda: p.pings == 1)
    reset = p.call(ECHO, [b"\x05"], end=False)
    p.pump(lambda: len(p.stream(reset)["data"]) > 0)
    p.conn.reset_stream(reset, 8)
    p.flush()
    after = p.call(ECHO, [b"\x06"])
    p.pump(lambda: p.finished(after))
    p.close()
    return {
        "unknown": {**p.result(unknown), "message": (p.stream(unknown)["headers"] or {}).get("grpc-message")},
        "pings": p.pings,
        "after_reset": p.result(after),
    }


# ---- header-level violations: h2 with its outbound validation off ----

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


def bad_headers(path):
    """Malformed requests for `path`, by what is wrong with them."""
    good = request_headers(path)
    return {
        "no_scheme": [(":method", "POST"), (":path", path), ("content-type", "application/grpc")],
        "two_methods": [(":method", "POST"), *good],
        "two_schemes": [*good[:2], (":scheme", "https"), *good[2:]],
        "two_paths": [(":path", "/x"), *good],
        "status_in_request": [(":status", "200"), *good],
        "pseudo_after_regular": [("content-type", "application/grpc"), *good[:4]],
        "uppercase_name": [*good, ("X-Upper", "1")],
        "connection_header": [*good, ("connection", "keep-alive")],
        "te_gzip": [*good[:5], ("te", "gzip")],
        "newline_in_value": [*good, ("x-v", "a\nb")],
        "content_length_1": [*good, ("content-length", "1")],
    }


def send_bad_headers(p, path):
    """Each malformed request (then an 80-byte message) on its own stream of one connection."""
    out = {}
    for name, headers in bad_headers(path).items():
        sid = p.conn.get_next_available_stream_id()
        p.conn.send_headers(sid, headers)
        p.conn.send_data(sid, grpc_message(b"\x01" * 75))
        p.flush()
        p.pump(lambda: p.finished(sid))
        out[name] = {"reset": p.stream(sid)["reset"], "served": len(p.stream(sid)["data"]) > 0}
    return out


def case_bad_headers(port):
    """RST_STREAM PROTOCOL_ERROR for each, and the connection serves a valid call after them."""
    p = Peer(port, validate_outbound=False)
    out = send_bad_headers(p, ECHO)
    ok = p.call(ECHO, [b"\x09\x09"])
    p.pump(lambda: p.finished(ok))
    p.close()
    return {"cases": out, "then": p.result(ok)}


def case_ads_bad_headers(port):
    """The same malformed requests on the xDS ADS method of a real xDS server."""
    p = Peer(port, validate_outbound=False)
    out = send_bad_headers(p, ADS)
    p.close()
    return {"cases": out}


def case_content_length(port):
    """content-length: 1 with 80 bytes of DATA; content-length: 100 ended after 8 bytes."""
    p = Peer(port, validate_outbound=False)
    over = p.call(ECHO, [b"\x07" * 75], extra=[("content-length", "1")], end=False)
    p.pump(lambda: p.finished(over))
    under = p.call(ECHO, [b"\x07" * 3], extra=[("content-length", "100")])
    p.pump(lambda: p.finished(under))
    exact = p.call(ECHO, [b"\x07" * 3], extra=[("content-length", "8")])
    p.pump(lambda: p.finished(exact))
    p.close()
    return {"over": p.result(over), "under": p.result(under), "exact": p.result(exact)}


# ---- frame-level violations: raw frames (hyperframe, hpack) ----


def frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, sid) + payload


class Raw:
    """A raw connection: the client preface, then frames as bytes; answers parsed by hyperframe."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.sendall(PREFACE + frame(4, 0, 0, b""))
        self.buf = b""
        self.encoder = hpack.Encoder()

    def headers(self, sid, flags=0x4, extra=()):
        block = self.encoder.encode(request_headers(ECHO, extra))
        return frame(1, flags, sid, block)

    def next_frame(self):
        while True:
            if len(self.buf) >= 9:
                header, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) >= 9 + length:
                    header.parse_body(memoryview(self.buf[9 : 9 + length]))
                    self.buf = self.buf[9 + length :]
                    return header
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                return None
            if not chunk:
                return None
            self.buf += chunk

    def answer(self, *frames):
        """Sends the frames and a PING, reads until the PING's ACK (or EOF): the first RST_STREAM
        or GOAWAY the server sent meanwhile, else {"ignored": True}."""
        Raw.pings = getattr(Raw, "pings", 0) + 1
        opaque = struct.pack(">Q", Raw.pings)
        self.sock.sendall(b"".join(frames) + frame(6, 0, 0, opaque))
        first = None
        while True:
            f = self.next_frame()
            if f is None:
                return first or {"closed": True}
            name = type(f).__name__
            if first is None and name == "RstStreamFrame":
                first = {"reset": [f.stream_id, f.error_code]}
            elif first is None and name == "GoAwayFrame":
                first = {"goaway": f.error_code}
            elif name == "PingFrame" and "ACK" in f.flags and f.opaque_data == opaque:
                return first or {"ignored": True}


RAW_CASES = {
    "data_on_idle": lambda r: [frame(0, 0, 1, grpc_message(b"\x01"))],
    "even_stream": lambda r: [r.headers(2)],
    "lower_stream_id": lambda r: [r.headers(5), r.headers(3)],
    "rst_on_idle": lambda r: [frame(3, 0, 1, struct.pack(">I", 8))],
    "zero_window_update_connection": lambda r: [frame(8, 0, 0, struct.pack(">I", 0))],
    "zero_window_update_stream": lambda r: [r.headers(1), frame(8, 0, 1, struct.pack(">I", 0))],
    "stream_window_overflow": lambda r: [r.headers(1), frame(8, 0, 1, struct.pack(">I", 2**31 - 1))],
    "enable_push_2": lambda r: [frame(4, 0, 0, struct.pack(">HI", 2, 2))],
    "initial_window_too_large": lambda r: [frame(4, 0, 0, struct.pack(">HI", 4, 2**31))],
    "max_frame_size_too_small": lambda r: [frame(4, 0, 0, struct.pack(">HI", 5, 16383))],
    "settings_ack_with_payload": lambda r: [frame(4, 1, 0, b"\0" * 6)],
    "padding_too_long": lambda r: [r.headers(1), frame(0, 0x8, 1, b"\x09abc")],
    "priority_self_dependency": lambda r: [r.headers(1), frame(2, 0, 1, struct.pack(">IB", 1, 16))],
    "continuation_interleaved": lambda r: [r.headers(1, flags=0), frame(0, 0, 1, b"")],
    "ping_on_stream": lambda r: [frame(6, 0, 1, b"\0" * 8)],
    "huffman_eos": lambda r: [frame(1, 0x4, 1, b"\x00\x01x\x84\xff\xff\xff\xff")],
    "table_size_update_too_large": lambda r: [frame(1, 0x4, 1, b"\x3f\xe2\x1f")],
}


def case_raw(port):
    out = {}
    for name, make in RAW_CASES.items():
        r = Raw(port)
        out[name] = r.answer(*make(r))
        r.sock.close()
    return out


def case_closed_streams(port):
    """Frames on streams h2 saw closed: by END_STREAM both ways, by the client's RST_STREAM."""
    out = {}
    p = Peer(port)
    done = p.call(ECHO, [b"\x01"])
    p.pump(lambda: p.finished(done))
    reset = p.call(ECHO, [b"\x02"], end=False)
    p.pump(lambda: len(p.stream(reset)["data"]) > 0)
    p.conn.reset_stream(reset, 8)
    p.flush()
    # From here on raw frames on the same socket; hyperframe reads the answers.
    r = Raw.__new__(Raw)
    r.sock, r.buf = p.sock, b""
    out["data_after_end_stream"] = r.answer(frame(0, 0, done, grpc_message(b"\x03")))
    out["window_update_after_end_stream"] = r.answer(frame(8, 0, done, struct.pack(">I", 10)))
    out["data_after_client_reset"] = r.answer(frame(0, 0, reset, grpc_message(b"\x03")))
    p.sock.close()
    return out


CASES = {
    "echo": case_echo,
    "concurrent": case_concurrent,
    "refusals": case_refusals,
    "bad_headers": case_bad_headers,
    "ads_bad_headers": case_ads_bad_headers,
    "content_length": case_content_length,
    "raw": case_raw,
    "closed_streams": case_closed_streams,
}


def main():
    port = int(sys.argv[1])
    for name in sys.argv[2:] or list(CASES):
        try:
            result = CASES[name](port)
        except Exception as e:  # reported, the Deno test fails on it
            result = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps({"case": name, **result}), flush=True)


if __name__ == "__main__":
    main()
