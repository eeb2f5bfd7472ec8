from support import Nginx, ask, request_packet, vector


def test_vector_through_gunicorn(server):
    reply = ask(server.tcp, vector("nginx-get-browser.bin"))
    assert reply.status == 200
    env = reply.json()
    assert env["PATH_INFO"] == "/hello/w\xc3\xb6rld"


def test_nginx(server, tmp_path):
    with Nginx(tmp_path, f"unix:{server.unix}") as nginx:
        status, _headers, body = nginx.request("GET", "/hello")
        assert status == 200
        assert body == b"Hello world\n"
    assert ask(server.unix, request_packet(path="/hello")).status == 200
