%% Upload progress: the app's view (`environ["bodypipe.progress"]', the ASGI
%% scope extension) and the operator's (`bodypipe_http:requests/1', and the
%% admin endpoint `/_bodypipe/requests' and `/_bodypipe/metrics', off unless
%% the server's `admin' option is true).
-module(bodypipe_http_progress_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1]).
-export([operator_view_while_uploading/1, app_view_wsgi/1, app_view_asgi/1,
         received_after_app_seeks_to_end/1, admin_off_by_default/1]).

-import(bodypipe_http_curl, [curl/3, curl/4, random_file/3, json/1]).

-define(SERVER, bodypipe_http_progress_test).

suite() ->
    [{timetrap, {minutes, 3}}].

all() ->
    [operator_view_while_uploading, app_view_wsgi, app_view_asgi,
     received_after_app_seeks_to_end, admin_off_by_default].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(bodypipe),
    {ok, _} = bodypipe_http:start(#{name => ?SERVER, port => 0, admin => true,
                                    python_path => [?config(data_dir, Config)],
                                    apps => [{<<"/w">>, <<"bp_progress_apps:wsgi_app">>},
                                             {<<"/s">>, <<"bp_progress_apps:seek_end_app">>},
                                             {<<"/a">>, <<"bp_progress_apps:asgi_app">>,
                                              [{interface, asgi}]}]}),
    [{port, bodypipe_http:port(?SERVER)} | Config].

end_per_suite(_Config) ->
    bodypipe_http:stop(?SERVER).

operator_view_while_uploading(Config) ->
    Port = ?config(port, Config),
    S = bodypipe_http_test_client:connect(Port),
    ok = bodypipe_http_test_client:send(
           S, [<<"POST /w/up?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n">>,
               binary:copy(<<"z">>, 300000)]),
    ok = bodypipe_http_test_client:wait_until(
           fun() -> [R || #{received := 300000} = R <- bodypipe_http:requests(?SERVER)] =/= [] end,
           400),
    [#{method := <<"POST">>, target := <<"/w/up?x=1">>, expected := 1000000,
       body_done := false, id := Id}] = bodypipe_http:requests(?SERVER),
    %% The same over HTTP: JSON ...
    {200, Json} = curl(Port, [], "/_bodypipe/requests"),
    #{<<"requests">> := Listed} = json(Json),
    ?assertMatch([#{<<"id">> := Id, <<"method">> := <<"POST">>, <<"target">> := <<"/w/up?x=1">>,
                    <<"received">> := 300000, <<"expected">> := 1000000,
                    <<"body_done">> := false}],
                 [R || #{<<"target">> := <<"/w/up?x=1">>} = R <- Listed]),
    %% ... and Prometheus text.
    {200, Metrics} = curl(Port, [], "/_bodypipe/metrics"),
    ct:pal("~ts", [Metrics]),
    Labels = <<"{id=\"", Id/binary, "\",method=\"POST\",target=\"/w/up?x=1\"}">>,
    ?assertMatch({_, _}, binary:match(Metrics, <<"bodypipe_request_body_received_bytes",
                                                 Labels/binary, " 300000\n">>)),
    ?assertMatch({_, _}, binary:match(Metrics, <<"bodypipe_request_body_expected_bytes",
                                                 Labels/binary, " 1000000\n">>)),
    ?assertMatch({_, _}, binary:match(Metrics, <<"# TYPE bodypipe_requests_in_flight gauge\n">>)),
    %% The rest of the body: the request ends and leaves the list.
    ok = bodypipe_http_test_client:send(S, binary:copy(<<"z">>, 700000)),
    {ok, #{status := 200, body := Body}} = bodypipe_http_test_client:response(S, 10000),
    ?assertMatch(#{<<"size">> := 1000000, <<"received">> := 1000000, <<"done">> := true},
                 json(Body)),
    gen_tcp:close(S),
    ok = bodypipe_http_test_client:wait_until(
           fun() -> bodypipe_http:requests(?SERVER) =:= [] end, 400),
    {405, _} = curl(Port, ["-X", "POST", "--data-binary", "x"], "/_bodypipe/requests").

app_view_wsgi(Config) ->
    Port = ?config(port, Config),
    File = random_file(?config(priv_dir, Config), "p.bin", 2000000),
    {200, B1} = curl(Port, ["--data-binary", "@" ++ File], "/w/"),
    #{<<"first">> := [First, 2000000]} = Got = json(B1),
    ?assert(First > 0 andalso First =< 2000000),
    ?assertMatch(#{<<"size">> := 2000000, <<"received">> := 2000000, <<"expected">> := 2000000,
                   <<"done">> := true, <<"fraction">> := 1.0}, Got),
    %% Chunked: the length is unknown until the end.
    {200, B2} = curl(Port, ["-T", "-"], "/w/", File),
    ?assertMatch(#{<<"size">> := 2000000, <<"received">> := 2000000, <<"expected">> := null,
                   <<"done">> := true, <<"fraction">> := null}, json(B2)).

app_view_asgi(Config) ->
    Port = ?config(port, Config),
    File = random_file(?config(priv_dir, Config), "pa.bin", 1500000),
    {200, B1} = curl(Port, ["--data-binary", "@" ++ File], "/a/"),
    ?assertMatch(#{<<"size">> := 1500000, <<"received">> := 1500000, <<"expected">> := 1500000,
                   <<"done">> := true}, json(B1)),
    {200, B2} = curl(Port, ["-T", "-"], "/a/", File),
    ?assertMatch(#{<<"size">> := 1500000, <<"received">> := 1500000, <<"expected">> := null,
                   <<"done">> := true}, json(B2)).

%% A library measuring the body (`seek(0, 2)', `tell()') moves the app's read
%% position to the declared end before the bytes are there; `received' stays
%% what has arrived (here exactly what the client sent, as it sends no more).
received_after_app_seeks_to_end(Config) ->
    Port = ?config(port, Config),
    S = bodypipe_http_test_client:connect(Port),
    ok = bodypipe_http_test_client:send(
           S, [<<"POST /s/ HTTP/1.1\r\nHost: x\r\nX-First: 300000\r\n"
                 "Content-Length: 1000000\r\n\r\n">>,
               binary:copy(<<"z">>, 300000)]),
    {ok, #{status := 200, body := Body}} = bodypipe_http_test_client:response(S, 10000),
    gen_tcp:close(S),
    ?assertMatch(#{<<"read">> := 300000, <<"end">> := 1000000,
                   <<"at_end">> := #{<<"tell">> := 1000000, <<"received">> := 300000,
                                     <<"done">> := false},
                   <<"after">> := 300000},
                 json(Body)).

admin_off_by_default(Config) ->
    {ok, _} = bodypipe_http:start(#{name => bodypipe_http_progress_noadmin, port => 0,
                                    python_path => [?config(data_dir, Config)],
                                    apps => [{<<"/w">>, <<"bp_progress_apps:wsgi_app">>}]}),
    try
        Port = bodypipe_http:port(bodypipe_http_progress_noadmin),
        {404, <<"no application mounted here\n">>} = curl(Port, [], "/_bodypipe/requests"),
        {404, _} = curl(Port, [], "/_bodypipe/metrics"),
        %% The Erlang call works all the same.
        [] = bodypipe_http:requests(bodypipe_http_progress_noadmin)
    after
        bodypipe_http:stop(bodypipe_http_progress_noadmin)
    end.
