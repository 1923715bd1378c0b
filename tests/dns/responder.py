#!/usr/bin/python3
# tests/dns/responder.py — a tiny DNS responder for answers dnsmasq will not give.
# Usage: responder.py PORT MODE   (UDP and TCP on 127.0.0.1 only)
#   servfail  every query gets rcode SERVFAIL
#   refused   every query gets rcode REFUSED
#   garbled   NOERROR, one answer record whose RDATA runs past the end of the packet
# Rule: loopback only, stdlib only; it serves until killed.
import socket
import struct
import sys
import threading


def reply(query, mode):
    if len(query) < 12:
        return None
    qid, flags = struct.unpack(">HH", query[:4])
    # Echo the question: find the end of QNAME, then QTYPE/QCLASS.
    pos = 12
    while pos < len(query) and query[pos] != 0:
        pos += 1 + query[pos]
    question = query[12 : pos + 5]
    rd = flags & 0x0100
    if mode in ("servfail", "refused"):
        rcode = 2 if mode == "servfail" else 5
        return struct.pack(">HHHHHH", qid, 0x8000 | rd | rcode, 1, 0, 0, 0) + question
    # garbled: claims 1 answer with RDLENGTH 200 but carries only 3 bytes of it.
    answer = struct.pack(">HHHIH", 0xC00C, struct.unpack(">H", question[-4:-2])[0], 1, 60, 200) + b"\x00\x0a\x00"
    return struct.pack(">HHHHHH", qid, 0x8000 | 0x0400 | rd, 1, 1, 0, 0) + question + answer


def serve_udp(sock, mode):
    while True:
        data, peer = sock.recvfrom(4096)
        out = reply(data, mode)
        if out:
            sock.sendto(out, peer)


def serve_tcp_client(conn, mode):
    with conn:
        while True:
            head = conn.recv(2)
            if len(head) < 2:
                return
            (n,) = struct.unpack(">H", head)
            data = b""
            while len(data) < n:
                chunk = conn.recv(n - len(data))
                if not chunk:
                    return
                data += chunk
            out = reply(data, mode)
            if out:
                conn.sendall(struct.pack(">H", len(out)) + out)


def serve_tcp(sock, mode):
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=serve_tcp_client, args=(conn, mode), daemon=True).start()


def main():
    port, mode = int(sys.argv[1]), sys.argv[2]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", port))
    tcp.listen(16)
    threading.Thread(target=serve_udp, args=(udp, mode), daemon=True).start()
    serve_tcp(tcp, mode)


if __name__ == "__main__":
    main()
