%% @doc The Erlang half of the WSGI bridge: builds a PEP 3333 environ for a
%% mochiweb request and drives `bodypipe_wsgi_host' (priv/python) through `py'.
%%
%% The environ is a map with binary keys (Python `str') and binary values
%% (Python `bytes', decoded as latin-1 by the host: PEP 3333's "native
%% strings"); `wsgi.input' is the request's `py_buffer', which Python sees as
%% an `erlang.PyBuffer'. The host adds `wsgi.errors' (`sys.stderr') and
%% `wsgi.version'.
-module(bodypipe_wsgi).

-export([setup/1, load/3, run/2, next/1, close/1, environ/5]).

-export_type([response/0, app_name/0, request/0]).

-type app_name() :: binary().
-type request() :: {mochiweb_request, list()}.
%% A mochiweb request (a tuple module instance).
-type header() :: {binary(), binary()}.
-type response() :: {Status :: binary(), [header()], Chunks :: [binary()], More :: none | py:pyobj()}.

-define(HOST, bodypipe_wsgi_host).

%% @doc Puts the host module's directory (and `ExtraPaths') on Python's `sys.path'.
-spec setup([file:filename_all()]) -> ok | {error, py:py_error()}.
setup(ExtraPaths) ->
    HostDir = filename:join(code:priv_dir(bodypipe), "python"),
    Paths = [unicode:characters_to_binary(P) || P <- [HostDir | ExtraPaths]],
    Code = <<"import sys\n"
             "for _p in reversed(paths):\n"
             "    _p = _p.decode()\n"
             "    if _p not in sys.path: sys.path.insert(0, _p)\n"
             "True">>,
    case py:eval(py:context(default), <<"exec(code, {'paths': paths}) or True">>,
                 #{<<"code">> => Code, <<"paths">> => Paths}) of
        {ok, true} -> ok;
        {error, _} = Error -> Error
    end.

%% @doc Imports the WSGI callable `Spec' (`<<"module:attr">>') as `Name';
%% `Validate' wraps it in `wsgiref.validate.validator'.
-spec load(app_name(), binary(), boolean()) -> ok | {error, py:py_error()}.
load(Name, Spec, Validate) ->
    case py:call(?HOST, load, [Name, Spec, Validate]) of
        {ok, _} -> ok;
        {error, _} = Error -> Error
    end.

%% @doc Calls the application: returns the status, the headers, the first body
%% blocks and `none' (the response is complete) or the object to step with
%% `next/1'. Exceptions before the headers are turned into a 500 response by
%% the host; `{error, _}' means the host itself failed.
-spec run(app_name(), map()) -> {ok, response()} | {error, py:py_error() | term()}.
run(Name, Environ) ->
    case py:call(?HOST, run, [Name, Environ]) of
        {ok, {Status, Headers, Chunks, More}} when is_binary(Status), is_list(Headers),
                                                   is_list(Chunks) ->
            {ok, {Status, Headers, Chunks, More}};
        {ok, Other} ->
            {error, {bad_response, Other}};
        {error, _} = Error ->
            Error
    end.

%% @doc The next non-empty body block, or `done' (the iterable is then closed).
-spec next(py:pyobj()) -> {ok, binary()} | done | {error, py:py_error() | term()}.
next(More) ->
    case py:call(More, next, []) of
        {ok, none} -> done;
        {ok, Bin} when is_binary(Bin) -> {ok, Bin};
        {ok, Other} -> {error, {bad_block, Other}};
        {error, _} = Error -> Error
    end.

%% @doc Calls the response iterable's `close()' (idempotent).
-spec close(none | py:pyobj()) -> ok.
close(none) ->
    ok;
close(More) ->
    _ = py:call(More, close, []),
    ok.

%% @doc The PEP 3333 environ of a mochiweb request whose application is mounted
%% at `ScriptName'; `PathInfo' is the rest of the (unquoted) path.
-spec environ(request(), binary(), binary(), py_buffer:buffer(),
              #{server_name := binary(), server_port := inet:port_number()}) -> map().
environ(Req, ScriptName, PathInfo, Buf, #{server_name := SName, server_port := SPort}) ->
    RawPath = mochiweb_request:get(raw_path, Req),
    {_, Query, _} = mochiweb_util:urlsplit_path(RawPath),
    {Major, Minor} = mochiweb_request:get(version, Req),
    Headers = mochiweb_headers:to_list(mochiweb_request:get(headers, Req)),
    Base = #{<<"REQUEST_METHOD">> => to_bin(mochiweb_request:get(method, Req)),
             <<"SCRIPT_NAME">> => ScriptName,
             <<"PATH_INFO">> => PathInfo,
             <<"QUERY_STRING">> => to_bin(Query),
             <<"RAW_URI">> => to_bin(RawPath),
             <<"SERVER_NAME">> => SName,
             <<"SERVER_PORT">> => integer_to_binary(SPort),
             <<"SERVER_PROTOCOL">> => iolist_to_binary(io_lib:format("HTTP/~b.~b", [Major, Minor])),
             <<"SERVER_SOFTWARE">> => <<"bodypipe-mochiweb">>,
             <<"wsgi.input">> => Buf,
             <<"wsgi.input_terminated">> => true,
             <<"wsgi.url_scheme">> => <<"http">>,
             <<"wsgi.multithread">> => true,
             <<"wsgi.multiprocess">> => false,
             <<"wsgi.run_once">> => false},
    WithPeer = case mochiweb_socket:peername(mochiweb_request:get(socket, Req)) of
                   {ok, {Addr, Port}} ->
                       Base#{<<"REMOTE_ADDR">> => list_to_binary(inet:ntoa(Addr)),
                             <<"REMOTE_PORT">> => integer_to_binary(Port)};
                   {error, _} ->
                       Base
               end,
    lists:foldl(fun add_header/2, WithPeer, Headers).

-spec add_header({atom() | string() | binary(), string() | binary()}, map()) -> map().
add_header({Name, Value}, Env) ->
    Key = string:uppercase(to_bin(Name)),
    case Key of
        <<"CONTENT-TYPE">> -> Env#{<<"CONTENT_TYPE">> => to_bin(Value)};
        <<"CONTENT-LENGTH">> -> Env#{<<"CONTENT_LENGTH">> => to_bin(Value)};
        _ ->
            case binary:match(Key, <<"_">>) of
                nomatch ->
                    %% Headers with underscores are dropped (as gunicorn and
                    %% nginx do): `X_Auth' would be indistinguishable from `X-Auth'.
                    CgiKey = <<"HTTP_", (binary:replace(Key, <<"-">>, <<"_">>, [global]))/binary>>,
                    Env#{CgiKey => to_bin(Value)};
                _ ->
                    Env
            end
    end.

-spec to_bin(atom() | iodata()) -> binary().
to_bin(A) when is_atom(A) -> atom_to_binary(A, latin1);
to_bin(B) when is_binary(B) -> B;
to_bin(L) when is_list(L) -> iolist_to_binary(L).
