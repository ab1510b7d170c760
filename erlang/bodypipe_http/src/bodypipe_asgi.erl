%% @doc The Erlang half of the ASGI 3 bridge: loads ASGI apps into
%% `bodypipe_asgi_host' (priv/python), runs their lifespan, builds the scope
%% of a request and starts it.
%%
%% An ASGI call answers Erlang exactly as a WSGI call does (see
%% `bodypipe_wsgi'): `run_async/3' delivers `{Ref, Result}', read with
%% `bodypipe_wsgi:run_result/1', and the response is stepped with
%% `bodypipe_wsgi:next_async/1' and closed with `bodypipe_wsgi:close/1'. So
%% the connection process drives both interfaces with one code path; what
%% differs is on the Python side: the app runs as a task on the interpreter's
%% asyncio loop, reads its body with `PyBuffer.aread' and its `send()' awaits
%% until the connection has taken each block.
-module(bodypipe_asgi).

-export([load/2, startup/1, shutdown/1, run_async/3, scope/3, disconnect/1, cancel/1]).

-define(HOST, bodypipe_asgi_host).

%% @doc Imports the ASGI callable `Spec' (`<<"module:attr">>', attr defaults
%% to `app') as `Name'; starts the interpreter's loop on first use.
%% (`bodypipe_wsgi:setup/1' puts the host module on `sys.path'.)
-spec load(bodypipe_wsgi:app_name(), binary()) -> ok | {error, py:py_error()}.
load(Name, Spec) ->
    case py:call(?HOST, load, [Name, Spec]) of
        {ok, _} -> ok;
        {error, _} = Error -> Error
    end.

%% @doc The lifespan startup of app `Name': `{ok, true}' once the app sent
%% `lifespan.startup.complete', `{ok, false}' if it does not support the
%% lifespan protocol, `{error, _}' if its startup failed.
-spec startup(bodypipe_wsgi:app_name()) -> {ok, boolean()} | {error, py:py_error()}.
startup(Name) ->
    case py:call(?HOST, startup, [Name]) of
        {ok, Bool} when is_boolean(Bool) -> {ok, Bool};
        {ok, Other} -> {error, {<<"TypeError">>, unicode:characters_to_binary(
                                                    io_lib:format("~0tp", [Other]))}};
        {error, _} = Error -> Error
    end.

%% @doc The lifespan shutdown of app `Name' (waits for the app's answer); the
%% host then forgets the app.
-spec shutdown(bodypipe_wsgi:app_name()) -> {ok, boolean()} | {error, py:py_error()}.
shutdown(Name) ->
    py:call(?HOST, shutdown, [Name]).

%% @doc Starts app `Name' on a request described by `Scope' (see `scope/3')
%% whose body is `Buf'; the result arrives as `{Ref, Result}'.
-spec run_async(bodypipe_wsgi:app_name(), map(), py_buffer:buffer()) ->
          {ok, reference()} | {error, py:py_error()}.
run_async(Name, Scope, Buf) ->
    py:call_async(py:context(default), ?HOST, run, [Name, Scope, Buf]).

%% @doc What the host needs for an ASGI http scope: `Head' from
%% `bodypipe_http_parser:parse_head/2', the mount's `{ScriptName, PathInfo,
%% Query}' (decoded path parts, raw query) and the connection's addresses.
%% The headers go as they came (lowercase names, in order, repeats kept).
-spec scope(map(), {binary(), binary(), binary()}, bodypipe_wsgi:conn_info()) -> map().
scope(#{method := Method, target := Target, version := {Major, Minor}, headers := Headers},
      {ScriptName, PathInfo, Query}, Conn) ->
    #{<<"method">> => Method,
      <<"http_version">> => <<($0 + Major), ".", ($0 + Minor)>>,
      <<"root_path">> => ScriptName,
      <<"path_info">> => PathInfo,
      <<"raw_path">> => raw_path(Target),
      <<"query_string">> => Query,
      <<"headers">> => [{N, V} || {N, V} <- Headers],
      <<"server">> => {maps:get(server_name, Conn), maps:get(server_port, Conn)},
      <<"client">> => case Conn of
                          #{remote_addr := Addr, remote_port := Port} -> {Addr, Port};
                          _ -> none
                      end}.

%% The target's path as sent (origin-form; the path of an absolute-form one).
raw_path(<<"/", _/binary>> = Target) ->
    hd(binary:split(Target, [<<"?">>, <<"#">>]));
raw_path(Target) ->
    case binary:split(Target, <<"://">>) of
        [_, Rest] ->
            case binary:match(Rest, <<"/">>) of
                {Pos, _} -> raw_path(binary:part(Rest, Pos, byte_size(Rest) - Pos));
                nomatch -> <<"/">>
            end;
        _ ->
            Target
    end.

%% @doc The client of the call whose scope carried `<<"bodypipe.token">> =>
%% Token' went away while the app runs: its `receive()' yields
%% `http.disconnect'. Does not wait (the call takes a pool thread, which may all
%% be busy): the connection goes on at once. `none' (a WSGI call): nothing to do.
-spec disconnect(integer() | none) -> ok.
disconnect(Token) ->
    signal(disconnect, Token).

%% @doc The call whose scope carried `<<"bodypipe.token">> => Token' ran past
%% the server's `app_timeout': its task is cancelled (the app sees
%% `asyncio.CancelledError' at its current `await', so its `finally' blocks
%% run) and the pool thread waiting for its response is freed. Does not wait,
%% as `disconnect/1'.
-spec cancel(integer() | none) -> ok.
cancel(Token) ->
    signal(cancel, Token).

signal(_Function, none) ->
    ok;
signal(Function, Token) ->
    _ = spawn(fun() -> py:call(?HOST, Function, [Token]) end),
    ok.
