%% Request bodies and real WSGI frameworks: chunked uploads reach Django,
%% Falcon and Bottle apps under the `buffer_chunked' mount option (the body is
%% read to its end first, the app gets CONTENT_LENGTH and no
%% HTTP_TRANSFER_ENCODING); without it they still never see a
%% Transfer-Encoding for the de-chunked body. And aborts are not errors: a
%% client that goes away mid-body, or an oversized chunked upload (413), gives
%% one line in the server's log, and no traceback and no 500 from Flask,
%% Falcon or Bottle apps that let `BodyAborted' escape.
-module(bodypipe_http_bodies_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1, init_per_testcase/2,
         end_per_testcase/2]).
-export([buffered_chunked_uploads/1, buffered_fixed_uploads/1, buffered_multipart_django/1,
         unbuffered_chunked_uploads/1, buffered_too_large/1, disconnect_is_not_an_error/1,
         too_large_chunked_is_not_an_error/1]).

-import(bodypipe_http_curl, [curl/3, curl/4, random_file/3, expected/1, json/1]).

-define(SERVER, bodypipe_http_bodies_test).
-define(MAX_BODY, (8 * 1000 * 1000)).
-define(FRAMEWORKS, [<<"django">>, <<"falcon">>, <<"bottle">>]).

suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [buffered_chunked_uploads, buffered_fixed_uploads, buffered_multipart_django,
     unbuffered_chunked_uploads, buffered_too_large, disconnect_is_not_an_error,
     too_large_chunked_is_not_an_error].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(bodypipe),
    Buffered = [buffer_chunked],
    Apps = lists:append(
             [[{<<"/b/", F/binary>>, <<"bp_body_apps:", F/binary, "_app">>, Buffered},
               {<<"/u/", F/binary>>, <<"bp_body_apps:", F/binary, "_app">>}]
              || F <- ?FRAMEWORKS ++ [<<"flask">>]]),
    {ok, _} = bodypipe_http:start(#{name => ?SERVER, port => 0, max_body => ?MAX_BODY,
                                    python_path => [?config(data_dir, Config)], apps => Apps}),
    [{port, bodypipe_http:port(?SERVER)} | Config].

end_per_suite(_Config) ->
    bodypipe_http:stop(?SERVER).

init_per_testcase(_Case, Config) ->
    {ok, _} = py:call(bp_body_apps, reset, []),
    {ok, true} = py:call(bp_body_apps, capture_stderr, []),
    bodypipe_http_log_capture:start(?MODULE),
    Config.

end_per_testcase(_Case, _Config) ->
    bodypipe_http_log_capture:stop(?MODULE),
    {ok, Err} = py:call(bp_body_apps, stderr, []),
    ct:pal("the apps' stderr: ~ts", [Err]),
    {ok, true} = py:call(bp_body_apps, restore_stderr, []),
    ok.

port(Config) ->
    ?config(port, Config).

%% ---------------------------------------------------------------------------

buffered_chunked_uploads(Config) ->
    File = random_file(?config(priv_dir, Config), "chunked.bin", 3 * 1000 * 1000 + 1),
    Size = integer_to_binary(3 * 1000 * 1000 + 1),
    lists:foreach(
      fun(F) ->
              {200, Body} = curl(port(Config), ["-T", "-"], "/b/" ++ binary_to_list(F) ++ "/upload",
                                 File),
              Got = json(Body),
              ?assertEqual(expected(File), maps:with([<<"size">>, <<"sha256">>], Got)),
              ?assertEqual(#{<<"framework">> => F, <<"content_length">> => Size,
                             <<"transfer_encoding">> => null},
                           maps:with([<<"framework">>, <<"content_length">>,
                                      <<"transfer_encoding">>], Got))
      end, ?FRAMEWORKS),
    %% An empty chunked body: CONTENT_LENGTH 0.
    {200, Empty} = curl(port(Config), ["-X", "PUT", "-H", "Transfer-Encoding: chunked",
                                       "--data-binary", ""], "/b/bottle/upload"),
    ?assertMatch(#{<<"size">> := 0, <<"content_length">> := <<"0">>}, json(Empty)).

buffered_fixed_uploads(Config) ->
    %% A fixed-length body on a buffer_chunked mount streams as usual.
    File = random_file(?config(priv_dir, Config), "fixed.bin", 2 * 1000 * 1000 + 3),
    lists:foreach(
      fun(F) ->
              {200, Body} = curl(port(Config), ["--data-binary", "@" ++ File],
                                 "/b/" ++ binary_to_list(F) ++ "/upload"),
              ?assertEqual(expected(File), maps:with([<<"size">>, <<"sha256">>], json(Body)))
      end, ?FRAMEWORKS).

buffered_multipart_django(Config) ->
    %% Django's multipart parser on a chunked form.
    File = random_file(?config(priv_dir, Config), "form.bin", 1000 * 1000 + 9),
    {200, Body} = curl(port(Config), ["-H", "Transfer-Encoding: chunked", "-F", "file=@" ++ File,
                                      "-F", "note=hi"], "/b/django/form"),
    ?assertMatch(#{<<"note">> := <<"hi">>}, json(Body)),
    ?assertEqual(expected(File), maps:with([<<"size">>, <<"sha256">>], json(Body))).

unbuffered_chunked_uploads(Config) ->
    %% Without buffer_chunked, these frameworks read no body without a
    %% CONTENT_LENGTH; but they are answered (no 400 from a second
    %% de-chunking, no 500) and never see HTTP_TRANSFER_ENCODING.
    File = random_file(?config(priv_dir, Config), "u.bin", 100 * 1000),
    lists:foreach(
      fun(F) ->
              {200, Body} = curl(port(Config), ["-T", "-"], "/u/" ++ binary_to_list(F) ++ "/upload",
                                 File),
              Got = json(Body),
              ct:pal("~ts without buffer_chunked: ~p", [F, Got]),
              ?assertEqual(null, maps:get(<<"transfer_encoding">>, Got)),
              ?assertEqual(null, maps:get(<<"content_length">>, Got))
      end, ?FRAMEWORKS).

buffered_too_large(Config) ->
    %% A chunked body over max_body on a buffer_chunked mount: 413, and the
    %% app is never called.
    File = random_file(?config(priv_dir, Config), "big.bin", ?MAX_BODY + 1000),
    {413, _} = curl(port(Config), ["-T", "-"], "/b/falcon/upload", File),
    {ok, []} = py:call(bp_body_apps, log, []),
    %% The next request is served.
    buffered_fixed_uploads(Config).

disconnect_is_not_an_error(Config) ->
    lists:foreach(
      fun(F) ->
              S = bodypipe_http_test_client:connect(port(Config)),
              Head = ["POST /u/", F, "/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n"],
              ok = bodypipe_http_test_client:send(S, [Head, binary:copy(<<"y">>, 200000)]),
              %% The app is reading (the body reader is waiting for more) ...
              ok = bodypipe_http_test_client:wait_until(
                     fun() -> #{body_readers := N} = bodypipe_http:info(?SERVER), N =:= 1 end, 400),
              ok = gen_tcp:close(S),
              %% ... its read raises BodyAborted, which it lets escape.
              ok = bodypipe_http_test_client:wait_until(
                     fun() -> {ok, Log} = py:call(bp_body_apps, log, []),
                              lists:keymember(F, 2, Log) end, 400),
              ok = bodypipe_http_test_client:wait_until(
                     fun() -> #{connections := C} = bodypipe_http:info(?SERVER), C =:= 0 end, 400)
      end, [<<"flask">>, <<"falcon">>, <<"bottle">>]),
    {ok, Log} = py:call(bp_body_apps, log, []),
    ?assertEqual([<<"bottle">>, <<"falcon">>, <<"flask">>],
                 lists:sort([F || {<<"aborted">>, F, Why} <- Log,
                                  binary:match(Why, <<"client_disconnected">>) =/= nomatch])),
    %% One line per request in the server's log, and no traceback.
    Lines = [T || {log, notice, T} <- flush_logs(),
                  binary:match(T, <<"client went away">>) =/= nomatch],
    ct:pal("server log: ~p", [Lines]),
    ?assertEqual(3, length(Lines)),
    assert_no_traceback().

too_large_chunked_is_not_an_error(Config) ->
    File = random_file(?config(priv_dir, Config), "toolarge.bin", ?MAX_BODY + 100000),
    lists:foreach(
      fun(F) ->
              %% Apps that read wsgi.input to its end without a CONTENT_LENGTH.
              {413, _} = curl(port(Config), ["-T", "-"], "/u/" ++ binary_to_list(F) ++ "/raw",
                              File)
      end, [<<"flask">>, <<"falcon">>, <<"bottle">>]),
    ok = bodypipe_http_test_client:wait_until(
           fun() -> {ok, Log} = py:call(bp_body_apps, log, []), length(Log) =:= 3 end, 400),
    {ok, Log} = py:call(bp_body_apps, log, []),
    ?assertEqual(3, length([x || {<<"aborted">>, _, Why} <- Log,
                                 binary:match(Why, <<"body_too_large">>) =/= nomatch])),
    %% Wait until every app call is over (its error output written, if any).
    ok = bodypipe_http_test_client:wait_until(
           fun() -> #{connections := C} = bodypipe_http:info(?SERVER), C =:= 0 end, 400),
    assert_no_traceback().

assert_no_traceback() ->
    {ok, Err} = py:call(bp_body_apps, stderr, []),
    ?assertEqual(nomatch, binary:match(Err, <<"Traceback">>)),
    ?assertEqual(nomatch, binary:match(Err, <<"BodyAborted">>)).

flush_logs() ->
    receive {log, _, _} = L -> [L | flush_logs()] after 0 -> [] end.
