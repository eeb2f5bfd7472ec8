"""gunicorn configuration for the benchmarks' ``ours-hook`` server: a post_request hook that
does nothing, the cost of calling one per request."""


def post_request(worker, req, environ, resp):
    pass
