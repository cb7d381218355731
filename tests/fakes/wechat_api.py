#!/usr/bin/env python3
"""A local fake of the WeChat official-account API for cohortdb's tests.

Usage: wechat_api.py PORT LOG_FILE [CERT_PEM KEY_PEM]   (with a certificate: https)

Serves the real paths (/cgi-bin/token, /cgi-bin/message/mass/send,
/cgi-bin/message/template/send, /cgi-bin/message/custom/send,
/cgi-bin/message/subscribe/bizsend, /cgi-bin/qrcode/create) with the real
answer shapes, answers a mass send whose clientmsgid it has seen with
45065 (sending nothing), appends
every call to LOG_FILE as one JSON line {"path", "query", "body", "ts",
"errcode"} (the errcode it answered; -500 for HTTP 500),
and takes fault injection on POST /_control:
  {"fail": {"<openid>": <errcode>}}      permanent errcode for that fan
  {"transient_once": ["<openid>", ...]}  answer -1 once, then succeed
  {"expire_token_once": true}            answer 40001 once (token expired)
  {"http_500_once": true}                answer HTTP 500 once
  {"latency_ms": 20}                     wait this long before each send answer
  {"drop_once": 2}                       take the next 2 send calls (logged with
                                         errcode -1000: delivered), then close the
                                         connection without an answer
  {"token_ttl": 5}                       tokens expire after 5 s (42001)
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LOCK = threading.RLock()
STATE = {"token_n": 0, "fail": {}, "transient": set(), "expire": False, "http500": False,
         "latency": 0.0, "drop": 0, "ttl": 7200, "token_at": 0.0, "clientmsgids": set()}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, obj, status=200):
        if getattr(self, "body", None) is not None or self.command == "GET":
            self.record(self.body, obj.get("errcode", 0) if status == 200 else -status)
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def record(self, body, errcode):
        u = urlparse(self.path)
        with LOCK, open(sys.argv[2], "a") as f:
            f.write(json.dumps({"path": u.path, "query": parse_qs(u.query), "body": body,
                                "ts": time.time(), "errcode": errcode}) + "\n")

    def do_GET(self):
        u = urlparse(self.path)
        self.body = None
        if u.path == "/cgi-bin/token":
            q = parse_qs(u.query)
            if q.get("secret") != ["fake-secret"]:
                return self.answer({"errcode": 40125, "errmsg": "invalid appsecret"})
            with LOCK:
                STATE["token_n"] += 1
                STATE["token_at"] = time.time()
                tok = "TOKEN%d" % STATE["token_n"]
            return self.answer({"access_token": tok, "expires_in": STATE["ttl"]})
        self.answer({"errcode": 404, "errmsg": "not found"}, 404)

    def do_POST(self):
        u = urlparse(self.path)
        n = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(n) or b"null")
        self.body = None
        if u.path == "/_control":
            with LOCK:
                STATE["fail"].update(body.get("fail", {}))
                STATE["transient"].update(body.get("transient_once", []))
                STATE["expire"] = body.get("expire_token_once", STATE["expire"])
                STATE["http500"] = body.get("http_500_once", STATE["http500"])
                STATE["latency"] = body.get("latency_ms", STATE["latency"] * 1000) / 1000.0
                STATE["drop"] = body.get("drop_once", STATE["drop"])
                STATE["ttl"] = body.get("token_ttl", STATE["ttl"])
            return self.answer({"ok": True})
        self.body = body
        if STATE["latency"]:
            time.sleep(STATE["latency"])
        token = parse_qs(u.query).get("access_token", [""])[0]
        with LOCK:
            if STATE["drop"] > 0:
                # delivered, then the answer is lost (-1000 in the log)
                STATE["drop"] -= 1
                if u.path == "/cgi-bin/message/mass/send" and body.get("clientmsgid"):
                    STATE["clientmsgids"].add(body["clientmsgid"])
                self.record(body, -1000)
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if STATE["http500"]:
                STATE["http500"] = False
                return self.answer({"errmsg": "boom"}, 500)
            if token != "TOKEN%d" % STATE["token_n"]:
                return self.answer({"errcode": 40001, "errmsg": "invalid credential"})
            if time.time() - STATE["token_at"] > STATE["ttl"]:
                return self.answer({"errcode": 42001, "errmsg": "access_token expired"})
            if STATE["expire"]:
                STATE["expire"] = False
                STATE["token_n"] += 1
                return self.answer({"errcode": 42001, "errmsg": "access_token expired"})
            if u.path == "/cgi-bin/message/mass/send":
                cm = body.get("clientmsgid")
                if cm and cm in STATE["clientmsgids"]:
                    return self.answer({"errcode": 45065, "errmsg": "clientmsgid exist"})
                if cm:
                    STATE["clientmsgids"].add(cm)
                return self.answer({"errcode": 0, "errmsg": "send job submission success",
                                    "msg_id": 1000, "msg_data_id": 2000})
            if u.path == "/cgi-bin/qrcode/create":
                scene = body.get("action_info", {}).get("scene", {}).get("scene_str", "")
                if not scene or len(scene) > 64:
                    return self.answer({"errcode": 40097, "errmsg": "invalid args"})
                permanent = body.get("action_name") == "QR_LIMIT_STR_SCENE"
                answer = {"ticket": "TICKET_" + scene, "url": "http://weixin.qq.com/q/" + scene}
                if not permanent:
                    answer["expire_seconds"] = body.get("expire_seconds", 60)
                return self.answer(answer)
            touser = body.get("touser")
            if touser in STATE["fail"]:
                return self.answer({"errcode": STATE["fail"][touser], "errmsg": "fail"})
            if touser in STATE["transient"]:
                STATE["transient"].discard(touser)
                return self.answer({"errcode": -1, "errmsg": "system error"})
        if u.path in ("/cgi-bin/message/template/send", "/cgi-bin/message/custom/send",
                      "/cgi-bin/message/subscribe/bizsend"):
            return self.answer({"errcode": 0, "errmsg": "ok", "msgid": 1})
        self.answer({"errcode": 404, "errmsg": "not found"}, 404)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        # a client killed mid-request (the tests kill cohortdb -9) is expected
        pass


if __name__ == "__main__":
    server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    if len(sys.argv) > 4:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()
