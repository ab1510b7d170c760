%% @doc The checks of the consumer test (erlang/consumer_test/run.sh), run in a
%% throwaway rebar3 project that depends on bodypipe and bodypipe_http through
%% git_subdir: starting `bodypipe' starts nothing beyond kernel and stdlib,
%% erlang/README.md's example streams a body from an Erlang process into a
%% Python function in the same VM, and `bodypipe_http' serves one request.
-module(consumer_check).

-export([main/0]).

%% @doc Runs every check; prints one line and halts with 0, or 1 on the first
%% failure (with what failed).
-spec main() -> no_return().
main() ->
    try run() of
        ok ->
            io:format("consumer: ok (bodypipe started alone, README example, one HTTP request)~n"),
            halt(0)
    catch
        Class:Reason:Stack ->
            io:format(standard_error, "consumer: FAILED ~tp:~tp~n~tp~n", [Class, Reason, Stack]),
            halt(1)
    end.

run() ->
    ok = start_bodypipe_alone(),
    ok = readme_example(),
    ok = one_http_request().

%% `ensure_all_started(bodypipe)' starts exactly kernel, stdlib and bodypipe
%% (those of them not running yet), and nothing else is running afterwards.
start_bodypipe_alone() ->
    Running = running(),
    {ok, Started} = application:ensure_all_started(bodypipe),
    Expected = [A || A <- [kernel, stdlib, bodypipe], not lists:member(A, Running)],
    check(started, lists:sort(Expected), lists:sort(Started)),
    check(running, [bodypipe, kernel, stdlib], lists:sort(running())),
    ok.

%% erlang/README.md's first example, as it is written there.
readme_example() ->
    Chunks = [<<"streamed ">>, <<"from an Erlang ">>, <<"process">>],
    {ok, Buf} = py_buffer:new(),
    spawn_link(fun() ->
        [ok = py_buffer:write(Buf, Chunk) || Chunk <- Chunks],
        ok = py_buffer:close(Buf)
    end),
    Environ = #{<<"REQUEST_METHOD">> => <<"POST">>, <<"wsgi.input">> => Buf},
    {ok, Response} = py:call(myapp, handle, [Environ]),
    check(readme_example, iolist_to_binary(Chunks), Response).

one_http_request() ->
    {ok, Started} = application:ensure_all_started(bodypipe_http),
    check(http_started, [bodypipe_http], Started),
    PyDir = os:getenv("CONSUMER_PY_DIR"),
    {ok, _} = bodypipe_http:start(#{port => 0, python_path => [PyDir],
                                    apps => [{<<"">>, <<"myapp:application">>}]}),
    Port = bodypipe_http:port(bodypipe_http),
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    ok = gen_tcp:send(S, <<"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
                           "Connection: close\r\n\r\nhello">>),
    Reply = recv_all(S, <<>>),
    ok = gen_tcp:close(S),
    [Head, Body] = binary:split(Reply, <<"\r\n\r\n">>),
    [Status | _] = binary:split(Head, <<"\r\n">>),
    check(http_status, <<"HTTP/1.1 200 OK">>, Status),
    check(http_body, <<"5 bytes: hello">>, Body),
    ok = bodypipe_http:stop(bodypipe_http).

recv_all(S, Acc) ->
    case gen_tcp:recv(S, 0, 30000) of
        {ok, Data} -> recv_all(S, <<Acc/binary, Data/binary>>);
        {error, closed} -> Acc
    end.

running() ->
    [A || {A, _, _} <- application:which_applications()].

check(_What, Same, Same) -> ok;
check(What, Expected, Got) -> error({What, {expected, Expected}, {got, Got}}).
