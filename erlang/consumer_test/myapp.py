"""The consumer test's Python side: erlang/README.md's example, and a WSGI app for bodypipe_http."""


def handle(environ):
    body = environ['wsgi.input'].read()  # blocks with the GIL released until EOF
    return body


def application(environ, start_response):
    body = environ['wsgi.input'].read()
    answer = b'%d bytes: %s' % (len(body), body)
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(answer)))])
    return [answer]
