%% `bodypipe serve' (bin/bodypipe) end to end: the supervisor and its worker VMs
%% started as a user starts them, talked to over loopback.
%%
%% Every wait is bounded (wait_until, receive ... after) and none is a timing
%% assertion: the GIL case asserts where requests went and that they were all
%% answered while the GIL holder still ran, not how fast.
-module(bodypipe_serve_SUITE).

-include_lib("common_test/include/ct.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1, init_per_testcase/2,
         end_per_testcase/2]).
-export([help_lists_every_option/1, load_error_has_traceback/1, string_app_spec/1,
         asgi_app/1, buffer_chunked/1, per_mount_options/1, gil_holder_does_not_stall_new_connections/1,
         os_exit_costs_one_worker/1, sigterm_lets_upload_finish/1,
         sighup_replaces_workers/1, access_log_and_server_header/1, venv_site_packages/1,
         sigterm_closes_idle_connections/1, worker_start_timeout/1,
         connections_spread_over_workers/1, port_in_use_is_refused/1, ipv6_bind/1]).

-define(C, bodypipe_http_test_client).

suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [help_lists_every_option, load_error_has_traceback, worker_start_timeout, string_app_spec,
     asgi_app, buffer_chunked, per_mount_options,
     access_log_and_server_header, venv_site_packages, os_exit_costs_one_worker,
     sigterm_lets_upload_finish, sigterm_closes_idle_connections,
     sighup_replaces_workers, connections_spread_over_workers, port_in_use_is_refused, ipv6_bind,
     gil_holder_does_not_stall_new_connections].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(bodypipe),
    Bin = find_up(code:lib_dir(bodypipe), "bin/bodypipe"),
    Python = os:find_executable("python3"),
    true = is_list(Python),
    %% The worker VMs run this build's code (the test profile's).
    Ebin = lists:usort([filename:dirname(code:which(M)) || M <- [bodypipe_serve, py]]),
    os:putenv("BODYPIPE_EBIN", lists:join(":", Ebin)),
    [{bin, Bin}, {python, Python} | Config].

end_per_suite(_Config) ->
    os:unsetenv("BODYPIPE_EBIN"),
    ok.

init_per_testcase(_Case, Config) ->
    Config.

end_per_testcase(_Case, Config) ->
    case get(serve) of
        undefined -> ok;
        S -> stop(S)
    end,
    Config.

find_up(Dir, Rel) ->
    P = filename:join(Dir, Rel),
    case filelib:is_regular(P) of
        true -> P;
        false when Dir =:= "/" -> error({not_found, Rel});
        false -> find_up(filename:dirname(filename:absname(Dir)), Rel)
    end.

%% ---------------------------------------------------------------------------

help_lists_every_option(Config) ->
    {0, Help} = run(Config, ["serve", "--help"]),
    Internal = [name, ip, port, reuseport, fd, apps, python_path, validate, gate, access_log],
    Keys = [K || K <- maps:keys(bodypipe_http:default_options()), not lists:member(K, Internal)],
    Missing = [K || K <- Keys, string:find(Help, option(K)) =:= nomatch],
    [] = Missing,
    Flat = re:replace(Help, "\\s+", " ", [global, {return, list}]),
    [true = string:find(Flat, O) =/= nomatch
     || O <- ["--bind", "--workers", "--python-path", "--venv", "--asgi", "--access-log",
              "--graceful-timeout", "--mount", "--buffer-chunked", "--admin", "(default: 30.0)",
              "(default: 4G)"]],
    %% The defaults the command passes are the server's own.
    {0, Text} = run(Config, ["serve", "x:y", "--bind", "127.0.0.1:0", "--print-config"]),
    {ok, Tokens, _} = erl_scan:string(Text ++ "."),
    {ok, #{http := Http}} = erl_parse:parse_term(Tokens),
    Defaults = bodypipe_http:default_options(),
    [] = [{K, V, maps:get(K, Defaults)} || {K, V} <- maps:to_list(Http),
                                           V =/= maps:get(K, Defaults)],
    [] = Keys -- maps:keys(Http),
    ok.

option(Key) ->
    "--" ++ [case C of $_ -> $-; _ -> C end || C <- atom_to_list(Key)] ++ " ".

load_error_has_traceback(Config) ->
    {1, Out} = run(Config, ["serve", "broken_app:application", "--python-path", data(Config),
                            "--bind", "127.0.0.1:0", "--workers", "2"]),
    ct:log("~ts", [Out]),
    [true = string:find(Out, S) =/= nomatch
     || S <- ["Traceback (most recent call last):", "broken_app.py\", line 5, in helper",
              "RuntimeError: broken_app cannot start: the database is not configured"]],
    %% Reported once, by the first worker, not by every worker.
    1 = length(string:split(Out, "Traceback", all)) - 1,
    {1, Out2} = run(Config, ["serve", "serve_app:nope", "--python-path", data(Config),
                             "--bind", "127.0.0.1:0", "--workers", "1"]),
    true = string:find(Out2, "AttributeError: module 'serve_app' has no attribute 'nope'")
        =/= nomatch,
    ok.

%% A worker that never gets to serve (its import hangs) is stopped, and so is
%% the command.
worker_start_timeout(Config) ->
    {1, Out} = run(Config, ["serve", "slow_app:application", "--python-path", data(Config),
                            "--bind", "127.0.0.1:0", "--workers", "1",
                            "--worker-start-timeout", "1"]),
    true = string:find(Out, "not serving after 1 s (--worker-start-timeout)") =/= nomatch,
    ok.

%% An app spec (and prefix) given as Erlang strings is served.
string_app_spec(Config) ->
    {ok, _} = bodypipe_http:start(#{name => ?FUNCTION_NAME, port => 0,
                                    python_path => [data(Config)],
                                    apps => [{"/s", "serve_app:application"}]}),
    try
        Port = bodypipe_http:port(?FUNCTION_NAME),
        {ok, #{status := 200}} = get(Port, "/s/pid")
    after
        bodypipe_http:stop(?FUNCTION_NAME)
    end.

%% --asgi: a Starlette app (the callable's name defaults to `app'), its body
%% streamed, its lifespan state in the request; a graceful stop runs its
%% lifespan shutdown. --buffer-chunked is refused with --asgi (WSGI only).
asgi_app(Config) ->
    Marker = filename:join(?config(priv_dir, Config), "lifespan"),
    os:putenv("BODYPIPE_TEST_LIFESPAN", Marker),
    try
        S = serve(Config, "asgi_app", ["--asgi", "--workers", "1"]),
        Port = port_of(S),
        Body = binary:copy(<<"0123456789abcdef">>, 1 bsl 16),
        Sha = string:lowercase(binary:encode_hex(crypto:hash(sha256, Body))),
        Expect = <<"1048576 ", Sha/binary, " yes">>,
        {ok, #{status := 200, body := Expect}} =
            exchange(Port, ["POST /upload HTTP/1.1\r\nHost: h\r\nConnection: close\r\n",
                            "Content-Length: 1048576\r\n\r\n", Body]),
        {ok, #{status := 200, body := Pid}} = get(Port, "/pid"),
        stop(S),
        erase(serve),
        {ok, Text} = file:read_file(Marker),
        Text = <<"shutdown ", Pid/binary, "\n">>
    after
        os:unsetenv("BODYPIPE_TEST_LIFESPAN")
    end,
    {2, Out} = run(Config, ["serve", "asgi_app", "--asgi", "--buffer-chunked", "--python-path",
                            data(Config), "--bind", "127.0.0.1:0", "--workers", "1"]),
    true = string:find(Out, "--buffer-chunked is for WSGI apps") =/= nomatch,
    ok.

%% --buffer-chunked: a WSGI app gets a chunked body whole, with its
%% CONTENT_LENGTH; without the option it streams, with no CONTENT_LENGTH.
buffer_chunked(Config) ->
    Chunked = ["POST /length HTTP/1.1\r\nHost: h\r\nConnection: close\r\n",
               "Transfer-Encoding: chunked\r\n\r\n",
               "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"],
    S1 = serve(Config, ["--workers", "1", "--buffer-chunked"]),
    {ok, #{status := 200, body := <<"11 11">>}} = exchange(port_of(S1), Chunked),
    stop(S1),
    erase(serve),
    S2 = serve(Config, ["--workers", "1"]),
    {ok, #{status := 200, body := <<"- 11">>}} = exchange(port_of(S2), Chunked),
    ok.

%% --mount PREFIX=MODULE:CALLABLE,OPTION...: each mount is served as it says,
%% whatever the others are; a spec that cannot be served is refused (status 2)
%% with the spec named.
per_mount_options(Config) ->
    Chunked = fun(Path) ->
                      ["POST ", Path, " HTTP/1.1\r\nHost: h\r\nConnection: close\r\n",
                       "Transfer-Encoding: chunked\r\n\r\n",
                       "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"]
              end,
    S = serve(Config, ["--workers", "1", "--mount", "/a=asgi_app,asgi",
                       "--mount", "/b=serve_app:application,wsgi,buffer-chunked"]),
    Port = port_of(S),
    %% The ASGI mount (Starlette, its default callable `app') streams a chunked body.
    Body = binary:copy(<<"0123456789abcdef">>, 1 bsl 12),
    Sha = string:lowercase(binary:encode_hex(crypto:hash(sha256, Body))),
    Expect = <<"65536 ", Sha/binary, " yes">>,
    {ok, #{status := 200, body := Expect}} =
        exchange(Port, ["POST /a/upload HTTP/1.1\r\nHost: h\r\nConnection: close\r\n",
                        "Transfer-Encoding: chunked\r\n\r\n", "10000\r\n", Body,
                        "\r\n0\r\n\r\n"]),
    %% The buffer-chunked WSGI mount gets the body whole with its length ...
    {ok, #{status := 200, body := <<"11 11">>}} = exchange(Port, Chunked("/b/length")),
    %% ... and the WSGI app at /, which said nothing, streams it (no length).
    {ok, #{status := 200, body := <<"- 11">>}} = exchange(Port, Chunked("/length")),
    [begin
         {2, Out} = run(Config, ["serve", "serve_app:application", "--python-path",
                                 data(Config), "--bind", "127.0.0.1:0", "--mount", Spec]),
         ct:log("~ts", [Out]),
         true = string:find(Out, Why) =/= nomatch
     end
     || {Spec, Why} <- [{"/a=asgi_app,asgi,buffer-chunked",
                         "'asgi_app,asgi,buffer-chunked': buffer-chunked is for WSGI apps"},
                        {"/a=asgi_app,fast", "unknown mount option 'fast'"},
                        {"/a=asgi_app,asgi,wsgi", "asgi and wsgi together"},
                        {"a=asgi_app", "--mount wants /PREFIX=MODULE:CALLABLE"}]],
    ok.

access_log_and_server_header(Config) ->
    Log = filename:join(?config(priv_dir, Config), "access.log"),
    S = serve(Config, ["--workers", "1", "--access-log", Log]),
    Port = port_of(S),
    {ok, #{status := 200} = R} = exchange(Port, ["GET /pid?x=1 HTTP/1.1\r\nHost: h\r\n",
                                                 "Referer: http://ref/\r\n",
                                                 "User-Agent: ct \"agent\"\r\n\r\n"]),
    <<"bodypipe">> = ?C:header(<<"server">>, R),
    {ok, #{status := 400}} = exchange(Port, ["GET x HTTP/1.1\r\nHost: h\r\n\r\n"]),
    ok = ?C:wait_until(fun() -> length(lines(Log)) >= 2 end, 400),
    [L1, L2 | _] = lines(Log),
    ct:log("~ts~n~ts", [L1, L2]),
    {match, _} = re:run(L1, "^127\\.0\\.0\\.1 - - \\[\\d\\d/[A-Z][a-z]{2}/\\d{4}:\\d\\d:\\d\\d:"
                            "\\d\\d \\+0000\\] \"GET /pid\\?x=1 HTTP/1\\.1\" 200 \\d+ "
                            "\"http://ref/\" \"ct \\\\\"agent\\\\\"\"$"),
    %% A head the parser refuses has no request line to log.
    {match, _} = re:run(L2, "\\] \"-\" 400 \\d+ \"-\" \"-\"$"),
    ok.

%% --venv: the workers' interpreters run with the venv's prefix and packages
%% (the project venv of scripts/setup.sh, which holds Flask; erlang/test.sh
%% names it in BODYPIPE_TEST_VENV), and a directory that is not a venv is refused.
venv_site_packages(Config) ->
    Venv = case os:getenv("BODYPIPE_TEST_VENV") of
               false -> filename:dirname(filename:dirname(find_up(code:lib_dir(bodypipe),
                                                                  ".venv/bin/python")));
               V -> V
           end,
    S = serve(Config, ["--workers", "1", "--venv", Venv]),
    {ok, #{status := 200, body := Body}} = get(port_of(S), "/env"),
    Real = list_to_binary(real_path(Venv)),
    <<Real:(byte_size(Real))/binary, " flask">> = Body,
    {1, Out} = run(Config, ["serve", "serve_app:application", "--python-path", data(Config),
                            "--bind", "127.0.0.1:0", "--venv", data(Config)]),
    true = string:find(Out, "not a venv (no pyvenv.cfg)") =/= nomatch,
    ok.

real_path(Path) ->
    string:trim(os:cmd("realpath '" ++ Path ++ "'")).

lines(Path) ->
    case file:read_file(Path) of
        {ok, Bin} -> [L || L <- binary:split(Bin, <<"\n">>, [global]), L =/= <<>>];
        {error, enoent} -> []
    end.

%% One request runs sum(range(N)) (a C call that never releases the GIL) on
%% one of two workers; requests on new connections meanwhile are all served by
%% the other worker before that call ends.
%% 16 connections opened at once, all kept alive, reach both workers (with one
%% listening socket that every worker accepted from, all 16 went to whichever
%% worker was awake). Each goes to a random worker: all 16 on one has a chance
%% of 2^-15.
connections_spread_over_workers(Config) ->
    S = serve(Config, ["--workers", "2"]),
    Port = port_of(S),
    Socks = [?C:connect(Port) || _ <- lists:seq(1, 16)],
    Pids = [begin
                ok = ?C:send(Sock, "GET /pid HTTP/1.1\r\nHost: h\r\n\r\n"),
                {ok, #{status := 200, body := B}} = ?C:response(Sock, 30000),
                B
            end || Sock <- Socks],
    [ok = gen_tcp:close(Sock) || Sock <- Socks],
    ct:log("workers of the 16 connections: ~p", [Pids]),
    Workers = lists:sort([binary_to_integer(P) || P <- lists:usort(Pids)]),
    Workers = lists:sort(worker_pids(S)),
    ok.

%% The workers' sockets share the port by SO_REUSEPORT, which would let a
%% second server of the same user join the group and take connections: it is
%% refused instead, and the first one still serves.
port_in_use_is_refused(Config) ->
    S = serve(Config, ["--workers", "2"]),
    Port = integer_to_list(port_of(S)),
    {St, Out} = run(Config, ["serve", "serve_app:application", "--python-path", data(Config),
                             "--bind", "127.0.0.1:" ++ Port]),
    ct:log("second server: ~b~n~ts", [St, Out]),
    1 = St,
    true = string:find(Out, "cannot listen on 127.0.0.1:" ++ Port) =/= nomatch,
    {ok, #{status := 200}} = get(port_of(S), "/pid"),
    ok.

%% An IPv6 address: the workers are told the family of the socket they
%% inherit (gen_tcp took it for IPv4 and refused it with einval).
ipv6_bind(Config) ->
    S = serve(Config, "serve_app:application", ["--workers", "2", "--bind", "[::1]:0"]),
    Sock = ?C:connect({0, 0, 0, 0, 0, 0, 0, 1}, port_of(S), [inet6]),
    try
        ok = ?C:send(Sock, "GET /pid HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
        {ok, #{status := 200, body := Pid}} = ?C:response(Sock, 30000),
        true = lists:member(binary_to_integer(Pid), worker_pids(S))
    after
        gen_tcp:close(Sock)
    end.

gil_holder_does_not_stall_new_connections(Config) ->
    S = serve(Config, ["--workers", "2"]),
    Port = port_of(S),
    Marker = filename:join(?config(priv_dir, Config), "spin"),
    Self = self(),
    Spinner = spawn_link(fun() ->
                                 R = get(Port, "/spin?n=400000000&marker=" ++ Marker, 300000),
                                 Self ! {spun, R}
                         end),
    ok = ?C:wait_until(fun() -> filelib:is_regular(Marker) end, 2000),
    {ok, StalledPid} = file:read_file(Marker),
    %% The stalled worker says so once its gate has been shut for a while.
    Stalled = "worker pid " ++ binary_to_list(StalledPid) ++ ": Python has not run",
    ok = ?C:wait_until(fun() -> has_line(S, Stalled) end, 2000),
    Timed = [begin
                 T0 = erlang:monotonic_time(millisecond),
                 {ok, #{status := 200, body := B}} = get(Port, "/pid", 60000),
                 {B, erlang:monotonic_time(millisecond) - T0}
             end || _ <- lists:seq(1, 40)],
    ct:log("stalled worker ~s; answers (worker, ms): ~p", [StalledPid, Timed]),
    Pids = [B || {B, _} <- Timed],
    %% Still running: none of the 40 waited for it.
    receive {spun, Early} -> ct:fail({gil_holder_ended_first, Early}) after 0 -> ok end,
    [] = [P || P <- Pids, P =:= StalledPid],
    [_] = lists:usort(Pids),
    receive {spun, {ok, #{status := 200, body := StalledPid}}} -> ok
    after 300000 -> ct:fail(spin_never_answered)
    end,
    ok = ?C:wait_until(fun() -> has_line(S, "worker pid " ++ binary_to_list(StalledPid)
                                         ++ ": Python runs again") end, 400),
    unlink(Spinner),
    ok.

%% os._exit(1) in the app ends only its worker: the request on it gets no
%% answer, the next request is served, and the supervisor starts another worker.
os_exit_costs_one_worker(Config) ->
    S = serve(Config, ["--workers", "2"]),
    Port = port_of(S),
    {error, closed} = get(Port, "/exit"),
    {ok, #{status := 200}} = get(Port, "/pid"),
    ok = ?C:wait_until(fun() -> has_line(S, "exited with status 1; starting another") end, 400),
    ok = ?C:wait_until(fun() -> length(lists:usort([B || _ <- lists:seq(1, 20),
                                                         {ok, #{body := B}} <- [get(Port, "/pid")]]))
                                    =:= 2 end, 400),
    ok.

%% SIGTERM during a 64 MiB upload: new connections are refused, the upload
%% completes with 200 and the right hash, then everything exits with status 0.
sigterm_lets_upload_finish(Config) ->
    S = serve(Config, ["--workers", "1", "--graceful-timeout", "60"]),
    Port = port_of(S),
    Size = 64 bsl 20,
    Block = crypto:strong_rand_bytes(1 bsl 20),
    Sock = ?C:connect(Port),
    ok = ?C:send(Sock, ["PUT /upload HTTP/1.1\r\nHost: h\r\nContent-Length: ",
                        integer_to_list(Size), "\r\n\r\n"]),
    [ok = ?C:send(Sock, Block) || _ <- lists:seq(1, 8)],
    os:cmd("kill -TERM " ++ integer_to_list(os_pid(S))),
    ok = ?C:wait_until(fun() -> has_line(S, "stopping (SIGTERM)") orelse
                                    has_line(S, "stopping (told to stop)") end, 400),
    {error, econnrefused} = gen_tcp:connect({127, 0, 0, 1}, Port, [], 5000),
    [ok = ?C:send(Sock, Block) || _ <- lists:seq(9, 64)],
    {ok, #{status := 200, body := Body}} = ?C:response(Sock, 120000),
    Want = string:lowercase(binary:encode_hex(crypto:hash(sha256, binary:copy(Block, 64)))),
    [Got, Hash, _Pid] = binary:split(Body, <<" ">>, [global]),
    {Size, Want} = {binary_to_integer(Got), Hash},
    0 = exit_status(S, 120000),
    erase(serve),
    ok.

%% A kept-alive connection waiting for its next request does not hold the
%% stop: with keep-alive and graceful timeouts of 10 minutes, SIGTERM still
%% ends the server (within the 2 minutes the test waits) and closes it.
sigterm_closes_idle_connections(Config) ->
    S = serve(Config, ["--workers", "1", "--keepalive-timeout", "600",
                       "--graceful-timeout", "600"]),
    Sock = ?C:connect(port_of(S)),
    ok = ?C:send(Sock, "GET /pid HTTP/1.1\r\nHost: h\r\n\r\n"),
    {ok, #{status := 200} = R} = ?C:response(Sock, 30000),
    undefined = ?C:header(<<"connection">>, R),
    os:cmd("kill -TERM " ++ integer_to_list(os_pid(S))),
    0 = exit_status(S, 120000),
    erase(serve),
    {error, closed} = ?C:response(Sock, 30000),
    ok.

%% SIGHUP: a new set of workers serves, the old ones leave, and requests made
%% all along are answered (the listening socket is never closed).
sighup_replaces_workers(Config) ->
    S = serve(Config, ["--workers", "2"]),
    Port = port_of(S),
    Old = worker_pids(S),
    2 = length(Old),
    Self = self(),
    Client = spawn_link(fun() -> Self ! {answers, requests(Port, Self, [])} end),
    os:cmd("kill -HUP " ++ integer_to_list(os_pid(S))),
    ok = ?C:wait_until(fun() -> has_line(S, "retiring the old ones") end, 2000),
    ok = ?C:wait_until(fun() -> not lists:any(fun alive/1, Old) end, 2000),
    {ok, #{status := 200, body := NewPid}} = get(Port, "/pid"),
    false = lists:member(binary_to_integer(NewPid), Old),
    Client ! stop,
    receive {answers, Answers} ->
            ct:log("~b requests during the reload", [length(Answers)]),
            [] = [A || A <- Answers, A =/= 200]
    after 60000 -> ct:fail(client_stuck)
    end,
    unlink(Client),
    ok.

requests(Port, Parent, Acc) ->
    receive stop -> Acc
    after 0 ->
        Status = case get(Port, "/pid", 30000) of
                     {ok, #{status := St}} -> St;
                     Error -> Error
                 end,
        requests(Port, Parent, [Status | Acc])
    end.

alive(Pid) ->
    os:cmd("kill -0 " ++ integer_to_list(Pid) ++ " 2>/dev/null && echo yes") =:= "yes\n".

%% ---------------------------------------------------------------------------
%% The command, as a port owned by a collector process that keeps its output.

data(Config) ->
    filename:absname(?config(data_dir, Config)).

run(Config, Args) ->
    P = open_port({spawn_executable, ?config(python, Config)},
                  [{args, [?config(bin, Config) | Args]}, exit_status, stderr_to_stdout, binary,
                   use_stdio]),
    collect(P, <<>>).

collect(P, Acc) ->
    receive
        {P, {data, D}} -> collect(P, <<Acc/binary, D/binary>>);
        {P, {exit_status, St}} -> {St, unicode:characters_to_list(Acc)}
    after 120000 ->
        ct:fail({command_stuck, Acc})
    end.

serve(Config, Extra) ->
    serve(Config, "serve_app:application", Extra).

serve(Config, App, Extra) ->
    Args = [?config(bin, Config), "serve", App, "--python-path", data(Config),
            "--bind", "127.0.0.1:0" | Extra],
    Python = ?config(python, Config),
    Parent = self(),
    Pid = spawn(fun() ->
                        P = open_port({spawn_executable, Python},
                                      [{args, Args}, exit_status, stderr_to_stdout, binary,
                                       {line, 65536}]),
                        {os_pid, OsPid} = erlang:port_info(P, os_pid),
                        Parent ! {self(), os_pid, OsPid},
                        serve_loop(P, OsPid, [], undefined)
                end),
    receive {Pid, os_pid, _} -> ok after 10000 -> ct:fail(no_os_pid) end,
    put(serve, Pid),
    ok = ?C:wait_until(fun() -> port_of(Pid) =/= undefined orelse exited(Pid) end, 2400),
    case port_of(Pid) of
        undefined -> ct:fail({serve_failed, output(Pid)});
        _ -> Pid
    end.

serve_loop(P, OsPid, Lines, Status) ->
    receive
        {P, {data, {_, Line}}} ->
            ct:log("serve: ~ts", [Line]),
            serve_loop(P, OsPid, [Line | Lines], Status);
        {P, {exit_status, St}} ->
            serve_loop(P, OsPid, Lines, St);
        {From, lines} ->
            From ! {self(), lists:reverse(Lines), Status},
            serve_loop(P, OsPid, Lines, Status);
        {From, os_pid} ->
            From ! {self(), OsPid},
            serve_loop(P, OsPid, Lines, Status);
        stop ->
            case Status of
                undefined ->
                    os:cmd("kill -TERM " ++ integer_to_list(OsPid)),
                    receive {P, {exit_status, _}} -> ok
                    after 60000 -> os:cmd("kill -KILL " ++ integer_to_list(OsPid))
                    end;
                _ ->
                    ok
            end
    end.

output(S) ->
    S ! {self(), lines},
    receive {S, Lines, Status} -> {Lines, Status} after 10000 -> ct:fail(collector_stuck) end.

exited(S) ->
    element(2, output(S)) =/= undefined.

exit_status(S, Tries) ->
    ok = ?C:wait_until(fun() -> exited(S) end, Tries div 25),
    element(2, output(S)).

has_line(S, Text) ->
    lists:any(fun(L) -> binary:match(L, unicode:characters_to_binary(Text)) =/= nomatch end,
              element(1, output(S))).

os_pid(S) ->
    S ! {self(), os_pid},
    receive {S, OsPid} -> OsPid after 10000 -> ct:fail(collector_stuck) end.

%% From "bodypipe: serving ... on http://127.0.0.1:PORT/ with N worker(s) (pids A B); ...".
port_of(S) ->
    case [binary_to_integer(P) || L <- element(1, output(S)),
                                  {match, [P]} <- [re:run(L, "serving .* on http://[^/]*:(\\d+)/",
                                                          [{capture, all_but_first, binary}])]] of
        [Port | _] -> Port;
        [] -> undefined
    end.

worker_pids(S) ->
    [L | _] = [L || L <- element(1, output(S)), binary:match(L, <<"serving ">>) =/= nomatch],
    {match, [Pids]} = re:run(L, "\\(pids ([0-9 ]+)\\)", [{capture, all_but_first, binary}]),
    [binary_to_integer(P) || P <- binary:split(Pids, <<" ">>, [global, trim_all])].

stop(S) ->
    S ! stop,
    MRef = monitor(process, S),
    receive {'DOWN', MRef, _, _, _} -> ok after 70000 -> ok end.

get(Port, Path) ->
    get(Port, Path, 30000).

get(Port, Path, Timeout) ->
    Sock = ?C:connect(Port),
    try
        ok = ?C:send(Sock, ["GET ", Path, " HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"]),
        ?C:response(Sock, Timeout)
    after
        gen_tcp:close(Sock)
    end.

exchange(Port, Request) ->
    Sock = ?C:connect(Port),
    try
        ok = ?C:send(Sock, Request),
        ?C:response(Sock, 30000)
    after
        gen_tcp:close(Sock)
    end.
