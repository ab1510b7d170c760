%% @doc The Erlang half of the WSGI bridge: builds a PEP 3333 environ for a
%% parsed request head and drives `bodypipe_wsgi_host' (priv/python) through
%% `py'.
%%
%% The environ is a map with binary keys (Python `str') and binary values
%% (Python `bytes', decoded as latin-1 by the host: PEP 3333's "native
%% strings"); `wsgi.input' is the request's `py_buffer', which Python sees as
%% an `erlang.PyBuffer'. The host adds `wsgi.errors' (`sys.stderr') and
%% `wsgi.version'. The calls that run the application (`run_async/2',
%% `next_async/1') do not wait: their result arrives as `{Ref, Result}' and is
%% read with `run_result/1' and `next_result/1', so the connection process
%% keeps streaming the body while the application runs.
-module(bodypipe_wsgi).

-export([setup/1, load/3, run_async/2, run_result/1, next_async/1, next_result/1, close/1,
         environ/4]).

-export_type([response/0, app_name/0, conn_info/0]).

-type app_name() :: binary().
-type header() :: {binary(), binary()}.
-type response() :: {Status :: binary(), [header()], Chunks :: [binary()], More :: none | py:pyobj()}.
-type conn_info() :: #{server_name := binary(), server_port := inet:port_number(),
                       remote_addr => binary(), remote_port => inet:port_number()}.

-define(HOST, bodypipe_wsgi_host).

%% @doc Puts the host module's directory (and `ExtraPaths') on Python's `sys.path'.
-spec setup([file:filename_all()]) -> ok | {error, py:py_error()}.
setup(ExtraPaths) ->
    HostDir = filename:join(code:priv_dir(bodypipe_http), "python"),
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

%% @doc Starts the application on `Environ'; its result comes as `{Ref, R}',
%% read with `run_result(R)'.
-spec run_async(app_name(), map()) -> {ok, reference()} | {error, py:py_error()}.
run_async(Name, Environ) ->
    py:call_async(py:context(default), ?HOST, run, [Name, Environ]).

%% @doc The status, the headers, the first body blocks and `none' (the
%% response is complete) or the object to step with `next_async/1'.
%% Exceptions before the headers are turned into a 500 response by the host;
%% `{error, _}' means the host itself failed.
-spec run_result({ok, term()} | {error, term()}) -> {ok, response()} | {error, term()}.
run_result({ok, {Status, Headers, Chunks, More}}) when is_binary(Status), is_list(Headers),
                                                       is_list(Chunks) ->
    {ok, {Status, Headers, Chunks, More}};
run_result({ok, Other}) ->
    {error, {bad_response, Other}};
run_result({error, _} = Error) ->
    Error.

%% @doc Asks for the next non-empty body block of `More'; read the result with
%% `next_result/1'.
-spec next_async(py:pyobj()) -> {ok, reference()} | {error, py:py_error()}.
next_async(More) ->
    py:call_async(py:context(default), More, next, []).

%% @doc The next block, or `done' (the iterable is then closed).
-spec next_result({ok, term()} | {error, term()}) -> {ok, binary()} | done | {error, term()}.
next_result({ok, none}) -> done;
next_result({ok, Bin}) when is_binary(Bin) -> {ok, Bin};
next_result({ok, Other}) -> {error, {bad_block, Other}};
next_result({error, _} = Error) -> Error.

%% @doc Calls the response iterable's `close()' (idempotent; a `close()' that
%% raises is logged by the host).
-spec close(none | py:pyobj()) -> ok.
close(none) ->
    ok;
close(More) ->
    _ = py:call(More, close, []),
    ok.

%% @doc The PEP 3333 environ of a request: `Head' from
%% `bodypipe_http_parser:parse_head/2', the application mounted at
%% `ScriptName' with the rest of the decoded path in `PathInfo', the raw
%% query, the body's buffer and the connection's addresses.
%%
%% Headers become `HTTP_*' variables (`-' as `_'), repeated ones joined with
%% `", "' in arrival order; `Content-Type' is `CONTENT_TYPE'; `CONTENT_LENGTH'
%% is the body's length when it has one (never for a chunked body). Names
%% with `_' are dropped (as gunicorn and nginx do: `X_Auth' would be
%% indistinguishable from `X-Auth'), and so are `Content-Length' and
%% `Transfer-Encoding', which the server has consumed (the body the
%% application reads is already de-chunked).
-spec environ(map(), {binary(), binary(), binary()}, py_buffer:buffer(), conn_info()) -> map().
environ(#{method := Method, target := Target, version := {Major, Minor}, headers := Headers,
          body := Body},
        {ScriptName, PathInfo, Query}, Buf, Conn) ->
    Base = #{<<"REQUEST_METHOD">> => Method,
             <<"SCRIPT_NAME">> => ScriptName,
             <<"PATH_INFO">> => PathInfo,
             <<"QUERY_STRING">> => Query,
             <<"REQUEST_URI">> => Target,
             <<"RAW_URI">> => Target,
             <<"SERVER_NAME">> => maps:get(server_name, Conn),
             <<"SERVER_PORT">> => integer_to_binary(maps:get(server_port, Conn)),
             <<"SERVER_PROTOCOL">> => <<"HTTP/", ($0 + Major), ".", ($0 + Minor)>>,
             <<"SERVER_SOFTWARE">> => <<"bodypipe">>,
             <<"wsgi.input">> => Buf,
             <<"wsgi.input_terminated">> => true,
             <<"wsgi.url_scheme">> => <<"http">>,
             <<"wsgi.multithread">> => true,
             <<"wsgi.multiprocess">> => false,
             <<"wsgi.run_once">> => false},
    WithPeer = case Conn of
                   #{remote_addr := Addr, remote_port := Port} ->
                       Base#{<<"REMOTE_ADDR">> => Addr,
                             <<"REMOTE_PORT">> => integer_to_binary(Port)};
                   _ ->
                       Base
               end,
    WithLength = case Body of
                     {length, N} -> WithPeer#{<<"CONTENT_LENGTH">> => integer_to_binary(N)};
                     _ -> WithPeer
                 end,
    lists:foldl(fun add_header/2, WithLength, Headers).

add_header({<<"content-length">>, _}, Env) ->
    Env;
add_header({<<"transfer-encoding">>, _}, Env) ->
    Env;
add_header({<<"content-type">>, Value}, Env) ->
    combine(<<"CONTENT_TYPE">>, Value, Env);
add_header({Name, Value}, Env) ->
    case binary:match(Name, <<"_">>) of
        nomatch -> combine(<<"HTTP_", (cgi_name(Name))/binary>>, Value, Env);
        _ -> Env
    end.

combine(Key, Value, Env) ->
    case Env of
        #{Key := Old} -> Env#{Key := <<Old/binary, ", ", Value/binary>>};
        _ -> Env#{Key => Value}
    end.

%% A lowercase token name as a CGI variable: ASCII uppercase, `-' as `_'.
cgi_name(Name) ->
    << <<(if C >= $a, C =< $z -> C - 32; C =:= $- -> $_; true -> C end)>> || <<C>> <= Name >>.
