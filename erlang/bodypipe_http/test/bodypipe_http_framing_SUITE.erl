%% HTTP/1.1 framing, limits, timeouts and responses of bodypipe_http, on real
%% sockets (gen_tcp, exact bytes; responses read with OTP's decode_packet).
%% Every case states the exact status the client gets, whether the connection
%% closes, and what the application saw (bp_framing_apps records each request:
%% its environ, the body it read and the exception it caught).
-module(bodypipe_http_framing_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-import(bodypipe_http_test_client, [connect/1, send/2, response/2, response/3, closed/2,
                                     exchange/2, exchange/3, header/2]).

suite() ->
    [{timetrap, {minutes, 3}}].

all() ->
    [{group, smuggling}, {group, chunked}, {group, head_limits}, {group, continue},
     {group, keep_alive}, {group, responses}, {group, routing}, {group, timeouts},
     {group, starvation}, {group, sockets}].

groups() ->
    [{smuggling, [], [cl_different_twice, cl_list_forms, cl_signs_and_junk, cl_identical_repeats,
                      cl_with_te, te_case_insensitive, te_unsupported, te_not_final,
                      te_in_http10]},
     {chunked, [], [chunk_extensions, chunk_line_too_long, chunk_size_digits, chunk_size_bad,
                    chunk_terminator_bad, trailers_discarded, trailer_forbidden,
                    chunked_too_large, framing_error_after_response_started,
                    client_disconnect_mid_body]},
     {head_limits, [], [request_line_limit, header_count_limit, head_size_limit,
                        header_line_limit, control_characters, obs_fold, bare_lf,
                        bad_request_lines, bad_versions, expect_unsupported, bad_targets,
                        duplicate_host, fixed_too_large]},
     {continue, [], [continue_sent_at_body_start, continue_not_for_refused,
                     continue_not_in_http10, continue_not_without_body]},
     {keep_alive, [], [pipelining, pipelined_bytes_after_body, http10_close, http10_keep_alive,
                       connection_close, unread_body_closes]},
     {responses, [], [bad_response_headers, content_length_extra_dropped,
                      content_length_short_closes, content_length_exact_keeps,
                      close_raises_after_last_block, server_header, big_block, head_request,
                      not_found_keeps_alive]},
     {routing, [], [percent_decoded_routing, environ_full, absolute_form, asterisk_and_connect]},
     {timeouts, [], [header_timeout_partial, header_timeout_drip, silent_connection_closed,
                     keepalive_timeout, body_timeout, app_timeout_aborts_input,
                     app_timeout_slow_app]},
     {starvation, [], [body_readers_capped]},
     {sockets, [], [reuseport, max_connections]}].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(bodypipe),
    Data = ?config(data_dir, Config),
    {ok, _} = start_server(framing, #{python_path => [Data]}),
    [{port, bodypipe_http:port(framing)} | Config].

end_per_suite(_Config) ->
    bodypipe_http:stop(framing).

init_per_group(timeouts, Config) ->
    {ok, _} = start_server(framing_timeouts, #{header_timeout => 500, body_timeout => 500,
                                               keepalive_timeout => 500, app_timeout => 1500}),
    [{port, bodypipe_http:port(framing_timeouts)} | Config];
init_per_group(_, Config) ->
    Config.

end_per_group(timeouts, _Config) ->
    bodypipe_http:stop(framing_timeouts);
end_per_group(_, _Config) ->
    ok.

init_per_testcase(_Case, Config) ->
    {ok, _} = py:call(bp_framing_apps, reset, []),
    Config.

end_per_testcase(_Case, _Config) ->
    ok.

start_server(Name, Opts) ->
    bodypipe_http:start(maps:merge(#{name => Name, port => 0,
                                     apps => [{<<"/bad">>, <<"bp_framing_apps:application">>},
                                              {<<"">>, <<"bp_framing_apps:application">>}]},
                                   Opts)).

%% ---------------------------------------------------------------------------
%% Request smuggling (RFC 9112 §6.3): every ambiguous length is a 400 and the
%% connection is closed, so a request hidden in a body is never served.

-define(SMUGGLED, "GET /read?smuggled HTTP/1.1\r\nHost: x\r\n\r\n").

cl_different_twice(Config) ->
    refused(Config, 400, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                         "Content-Length: 44\r\n\r\nabc" ?SMUGGLED).

cl_list_forms(Config) ->
    [refused(Config, 400, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: " ++ V ++
                          "\r\n\r\n" ?SMUGGLED)
     || V <- ["0, 44", "0 44", "0,44", "44, 0"]].

cl_signs_and_junk(Config) ->
    [refused(Config, 400, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: " ++ V ++
                          "\r\n\r\n" ?SMUGGLED)
     || V <- ["+3", "-0", "-1", "abc", "3a", "0x10", "1e3", "", "3.0",
              "99999999999999999999999999"]].

cl_identical_repeats(Config) ->
    [begin
         reset(),
         {[R1, R2], open} = exchange(port(Config),
                                     "POST /read HTTP/1.1\r\nHost: x\r\n" ++ H ++ "\r\nhello"
                                     ?SMUGGLED),
         ?assertMatch({200, <<"read 5\n">>}, sb(R1)),
         ?assertMatch({200, <<"read 0\n">>}, sb(R2)),
         [#{<<"body">> := <<"hello">>, <<"query">> := <<>>},
          #{<<"body">> := <<>>, <<"query">> := <<"smuggled">>}] = records(2)
     end || H <- ["Content-Length: 5\r\nContent-Length: 5\r\n", "Content-Length: 5, 5\r\n"]].

cl_with_te(Config) ->
    %% Content-Length with Transfer-Encoding: 400 and close, never reuse.
    refused(Config, 400, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" ?SMUGGLED),
    refused(Config, 400, "POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                         "Content-Length: 44\r\n\r\n0\r\n\r\n" ?SMUGGLED).

te_case_insensitive(Config) ->
    [begin
         reset(),
         {[R], open} = exchange(port(Config), "POST /read HTTP/1.1\r\nHost: x\r\n"
                                "Transfer-Encoding: " ++ TE ++ "\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
         ?assertEqual({200, <<"read 5\n">>}, sb(R)),
         [#{<<"body">> := <<"hello">>, <<"headers">> := Headers}] = records(1),
         %% Neither framing header reaches the app as an HTTP_ variable.
         ?assertNot(maps:is_key(<<"HTTP_TRANSFER_ENCODING">>, Headers)),
         ?assertNot(maps:is_key(<<"CONTENT_LENGTH">>, Headers))
     end || TE <- ["Chunked", "CHUNKED", "chunked"]].

te_unsupported(Config) ->
    %% A coding before chunked that the server does not implement: 501.
    [refused(Config, 501, "POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " ++ TE ++
                          "\r\n\r\n5\r\nhello\r\n0\r\n\r\n" ?SMUGGLED)
     || TE <- ["gzip, chunked", "identity, chunked", "x-custom, chunked"]],
    %% No chunked at the end: the length cannot be known (RFC 9112 §6.3): 400.
    [refused(Config, 400, "POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " ++ TE ++
                          "\r\n\r\n5\r\nhello\r\n0\r\n\r\n" ?SMUGGLED)
     || TE <- ["gzip", "identity"]].

te_not_final(Config) ->
    [refused(Config, 400, "POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " ++ TE ++
                          "\r\n\r\n5\r\nhello\r\n0\r\n\r\n" ?SMUGGLED)
     || TE <- ["chunked, gzip", "chunked, chunked"]].

te_in_http10(Config) ->
    refused(Config, 400, "POST /read HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "5\r\nhello\r\n0\r\n\r\n").

%% ---------------------------------------------------------------------------
%% Chunked bodies.

chunk_extensions(Config) ->
    {[R], open} = exchange(port(Config), "POST /read HTTP/1.1\r\nHost: x\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n"
                           "5;a=b\r\nhello\r\n6 ; name=\"q s\" ; x\r\n world\r\n0;end=1\r\n\r\n"),
    ?assertEqual({200, <<"read 11\n">>}, sb(R)),
    [#{<<"body">> := <<"hello world">>, <<"error">> := none}] = records(1).

chunk_line_too_long(Config) ->
    %% 8 KiB of extension: 400, the app's read raises BodyAborted(bad_request_body);
    %% nothing after it is read as a request (mochiweb read it as size 0 and went on).
    Ext = lists:duplicate(8192, $a),
    refused_body(Config, 400, "POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                              "\r\n5;" ++ Ext ++ "\r\nhello\r\n0\r\n\r\n" ?SMUGGLED,
                 <<"bad_request_body">>).

chunk_size_digits(Config) ->
    %% 16 hex digits is the most a size may have (leading zeros count); 17 is a 400.
    {[R], open} = exchange(port(Config), "POST /read HTTP/1.1\r\nHost: x\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n"
                           "0000000000000005\r\nhello\r\n0\r\n\r\n"),
    ?assertEqual({200, <<"read 5\n">>}, sb(R)),
    [#{<<"body">> := <<"hello">>}] = records(1),
    reset(),
    refused_body(Config, 400, "POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                              "\r\n00000000000000005\r\nhello\r\n0\r\n\r\n",
                 <<"bad_request_body">>).

chunk_size_bad(Config) ->
    [begin
         reset(),
         refused_body(Config, 400, "POST /read HTTP/1.1\r\nHost: x\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n" ++ Size ++
                                   "\r\nhello\r\n0\r\n\r\n" ?SMUGGLED,
                      <<"bad_request_body">>)
     end || Size <- ["zz", "+5", "-5", "0x5", " 5", "5 ", "", "5_0"]].

chunk_terminator_bad(Config) ->
    refused_body(Config, 400, "POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                              "\r\n5\r\nhelloXX0\r\n\r\n" ?SMUGGLED, <<"bad_request_body">>).

trailers_discarded(Config) ->
    {[R1, R2], open} = exchange(port(Config), "POST /read HTTP/1.1\r\nHost: x\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
                                "X-Checksum: abc\r\nX-Other: 1\r\n\r\n" ?SMUGGLED),
    ?assertEqual({200, <<"read 5\n">>}, sb(R1)),
    ?assertEqual({200, <<"read 0\n">>}, sb(R2)),
    [#{<<"body">> := <<"hello">>, <<"headers">> := H}, #{<<"query">> := <<"smuggled">>}] =
        records(2),
    ?assertNot(maps:is_key(<<"HTTP_X_CHECKSUM">>, H)).

trailer_forbidden(Config) ->
    [begin
         reset(),
         refused_body(Config, 400, "POST /read HTTP/1.1\r\nHost: x\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n" ++
                                   T ++ "\r\n\r\n", <<"bad_request_body">>)
     end || T <- ["Content-Length: 5", "Transfer-Encoding: chunked", "Bad Name: 1",
                  "X: a\x01b"]].

chunked_too_large(_Config) ->
    {ok, _} = start_server(framing_small, #{max_body => 1000}),
    try
        Port = bodypipe_http:port(framing_small),
        Chunk = ["3e8\r\n", lists:duplicate(1000, $a), "\r\n"],   % 1000 bytes: fits
        {[R], open} = exchange(Port, ["POST /read HTTP/1.1\r\nHost: x\r\n"
                                      "Transfer-Encoding: chunked\r\n\r\n", Chunk, "0\r\n\r\n"]),
        ?assertEqual({200, <<"read 1000\n">>}, sb(R)),
        reset(),
        {[R2], closed} = exchange(Port, ["POST /read HTTP/1.1\r\nHost: x\r\n"
                                         "Transfer-Encoding: chunked\r\n\r\n", Chunk,
                                         "1\r\nb\r\n0\r\n\r\n"]),
        ?assertEqual(413, status(R2)),
        [#{<<"error">> := E}] = records(1),
        ?assertMatch({_, _}, binary:match(E, <<"body_too_large">>))
    after
        bodypipe_http:stop(framing_small)
    end.

framing_error_after_response_started(Config) ->
    %% The echo app streams the body back: once its response has started, a bad chunk
    %% can only close the connection (the response stays unterminated); the app sees
    %% bad_request_body, not a disconnect.
    S = connect(port(Config)),
    ok = send(S, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "6\r\nline1\n\r\n"),
    {ok, Head} = gen_tcp:recv(S, 0, 5000),
    ?assertMatch(<<"HTTP/1.1 200 OK\r\n", _/binary>>, Head),
    Got = recv_until(S, Head, <<"line1\n">>),
    ok = send(S, "zz\r\n"),
    All = iolist_to_binary([Got, bodypipe_http_test_client:recv_all(S, 5000)]),
    ?assertEqual(nomatch, binary:match(All, <<"0\r\n\r\n">>)),   % never terminated
    [#{<<"body">> := <<"line1\n">>, <<"error">> := E}] = records(1),
    ?assertMatch({_, _}, binary:match(E, <<"bad_request_body">>)),
    ?assertEqual(nomatch, binary:match(E, <<"client_disconnected">>)).

client_disconnect_mid_body(Config) ->
    S = connect(port(Config)),
    ok = send(S, ["POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
                  lists:duplicate(10, $a)]),
    timer:sleep(200),
    gen_tcp:close(S),
    [#{<<"error">> := E}] = records(1),
    ?assertMatch({_, _}, binary:match(E, <<"client_disconnected">>)).

%% ---------------------------------------------------------------------------
%% Limits of the head.

request_line_limit(Config) ->
    %% The request line without its CRLF may be 8192 bytes (default max_request_line).
    Line = fun(N) ->
                   Prefix = "GET /read?",
                   Suffix = " HTTP/1.1",
                   Prefix ++ lists:duplicate(N - length(Prefix) - length(Suffix), $q) ++ Suffix
           end,
    8192 = length(Line(8192)),
    {[R], open} = exchange(port(Config), Line(8192) ++ "\r\nHost: x\r\n\r\n"),
    ?assertEqual(200, status(R)),
    reset(),
    refused(Config, 414, Line(8193) ++ "\r\nHost: x\r\n\r\n"),
    %% Also when the line never ends.
    refused(Config, 414, Line(9000)).

header_count_limit(Config) ->
    Headers = fun(N) -> [io_lib:format("X-H~b: ~b\r\n", [I, I]) || I <- lists:seq(1, N)] end,
    {[R], open} = exchange(port(Config), ["GET /read HTTP/1.1\r\n", Headers(99),
                                          "Host: x\r\n\r\n"]),
    ?assertEqual(200, status(R)),
    reset(),
    refused(Config, 431, ["GET /read HTTP/1.1\r\nHost: x\r\n", Headers(100), "\r\n"]).

head_size_limit(Config) ->
    Big = fun(I) -> ["X-Big", integer_to_list(I), ": ", lists:duplicate(8000, $v), "\r\n"] end,
    {[R], open} = exchange(port(Config), ["GET /read HTTP/1.1\r\nHost: x\r\n",
                                          [Big(I) || I <- lists:seq(1, 7)], "\r\n"]),
    ?assertEqual(200, status(R)),
    reset(),
    %% 9 x 8 KB > 64 KiB: 431, also when the head never ends.
    refused(Config, 431, ["GET /read HTTP/1.1\r\nHost: x\r\n", [Big(I) || I <- lists:seq(1, 9)],
                          "\r\n"]),
    refused(Config, 431, ["GET /read HTTP/1.1\r\nHost: x\r\n",
                          [Big(I) || I <- lists:seq(1, 9)]]).

header_line_limit(Config) ->
    refused(Config, 431, ["GET /read HTTP/1.1\r\nHost: x\r\nX-Long: ",
                          lists:duplicate(8200, $v), "\r\n\r\n"]).

control_characters(Config) ->
    [refused(Config, 400, ["GET /read HTTP/1.1\r\nHost: x\r\n", H, "\r\n\r\n"])
     || H <- ["X-A: a\x01b", "X-A: a\x7fb", "X-A: a\x00b", "X-A: a\rb", "X-\x01A: 1",
              "X A: 1", "X-A : 1", ": novalue", "X@A: 1"]],
    %% HTAB and obs-text are allowed in values.
    {[R], open} = exchange(port(Config), "GET /read HTTP/1.1\r\nHost: x\r\n"
                           "X-A: a\tb\r\nX-B: caf\xe9\r\n\r\n"),
    ?assertEqual(200, status(R)),
    [#{<<"headers">> := #{<<"HTTP_X_A">> := <<"a\tb">>, <<"HTTP_X_B">> := XB}}] = records(1),
    ?assertEqual(<<"caf", 16#e9/utf8>>, XB).   % latin-1 decoded by the host (PEP 3333)

obs_fold(Config) ->
    refused(Config, 400, "GET /read HTTP/1.1\r\nHost: x\r\nX-A: one\r\n two\r\n\r\n"),
    refused(Config, 400, "GET /read HTTP/1.1\r\nHost: x\r\nX-A: one\r\n\ttwo\r\n\r\n").

bare_lf(Config) ->
    refused(Config, 400, "GET /read HTTP/1.1\nHost: x\n\n"),
    refused(Config, 400, "GET /read HTTP/1.1\r\nHost: x\nX: 1\r\n\r\n").

bad_request_lines(Config) ->
    %% Answered at once (the old server held these connections for 300 s).
    [refused(Config, 400, L) || L <- ["GET\r\n\r\n", "GET  /read HTTP/1.1\r\n\r\n",
                                      "GET /read  HTTP/1.1\r\n\r\n", "GET /read HTTP/1.1 x\r\n\r\n",
                                      "G(T /read HTTP/1.1\r\n\r\n", "\x01GET / HTTP/1.1\r\n\r\n",
                                      "GET /a\x01b HTTP/1.1\r\n\r\n",
                                      "GET /caf\xe9 HTTP/1.1\r\n\r\n"]].

bad_versions(Config) ->
    [refused(Config, 505, "GET /read " ++ V ++ "\r\nHost: x\r\n\r\n")
     || V <- ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9"]],
    [refused(Config, 400, "GET /read " ++ V ++ "\r\nHost: x\r\n\r\n")
     || V <- ["HTTP/1", "http/1.1", "HTTP/1.1.1", "HTTP/11", "FOO/1.1"]].

expect_unsupported(Config) ->
    refused(Config, 417, "POST /read HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n"
                         "Content-Length: 5\r\n\r\nhello").

bad_targets(Config) ->
    [refused(Config, 400, "GET " ++ T ++ " HTTP/1.1\r\nHost: x\r\n\r\n")
     || T <- ["read", "../read", "*", "example.com:80"]].

duplicate_host(Config) ->
    refused(Config, 400, "GET /read HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n").

fixed_too_large(Config) ->
    %% Refused from the Content-Length alone (default max_body: 4 GiB).
    refused(Config, 413, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 5368709120\r\n\r\n").

%% ---------------------------------------------------------------------------
%% Expect: 100-continue: sent at body start, once the request passed every check
%% that does not need the body.

continue_sent_at_body_start(Config) ->
    S = connect(port(Config)),
    ok = send(S, "POST /read HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                 "Content-Length: 5\r\n\r\n"),
    {ok, C} = response(S, 5000),
    ?assertEqual(100, status(C)),
    ok = send(S, "hello"),
    {ok, R} = response(S, 5000),
    ?assertEqual({200, <<"read 5\n">>}, sb(R)),
    [#{<<"body">> := <<"hello">>, <<"headers">> := #{<<"HTTP_EXPECT">> := <<"100-continue">>}}] =
        records(1),
    gen_tcp:close(S).

continue_not_for_refused(Config) ->
    S = connect(port(Config)),
    ok = send(S, "POST /read HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                 "Content-Length: 5368709120\r\n\r\n"),
    {ok, R} = response(S, 5000),
    ?assertEqual(413, status(R)),
    ?assertEqual(true, closed(S, 5000)),
    ?assertEqual([], records(0)).

continue_not_in_http10(Config) ->
    S = connect(port(Config)),
    ok = send(S, "POST /read HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
    ?assertEqual(timeout, closed(S, 300)),   % no 100 for HTTP/1.0 (RFC 9110 §10.1.1)
    ok = send(S, "hello"),
    {ok, R} = response(S, 5000),
    ?assertEqual({200, <<"read 5\n">>}, sb(R)),
    gen_tcp:close(S).

continue_not_without_body(Config) ->
    {[R], open} = exchange(port(Config), "GET /read HTTP/1.1\r\nHost: x\r\n"
                           "Expect: 100-continue\r\n\r\n"),
    ?assertEqual(200, status(R)).

%% ---------------------------------------------------------------------------
%% Keep-alive and pipelining.

pipelining(Config) ->
    %% Three requests in one write: fixed-length, chunked, no body.
    {Rs, open} = exchange(port(Config),
                          "POST /read?1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                          "POST /read?2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "3\r\nabc\r\n0\r\n\r\n"
                          "GET /read?3 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ?assertEqual([{200, <<"read 5\n">>}, {200, <<"read 3\n">>}, {200, <<"read 0\n">>}],
                 [sb(R) || R <- Rs]),
    ?assertEqual([{<<"1">>, <<"hello">>}, {<<"2">>, <<"abc">>}, {<<"3">>, <<>>}],
                 [{Q, B} || #{<<"query">> := Q, <<"body">> := B} <- records(3)]).

pipelined_bytes_after_body(Config) ->
    %% The next request arrives in the same packet as the end of a body, byte by byte
    %% and all at once: the body is exactly its Content-Length.
    S = connect(port(Config)),
    Two = <<"POST /read?a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            "POST /read?b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nde">>,
    [ok = send(S, <<B>>) || <<B>> <= Two],
    [R1, R2] = bodypipe_http_test_client:responses(S, 2, 5000),
    ?assertEqual([{200, <<"read 3\n">>}, {200, <<"read 2\n">>}], [sb(R1), sb(R2)]),
    ?assertEqual([<<"abc">>, <<"de">>], [B || #{<<"body">> := B} <- records(2)]),
    gen_tcp:close(S).

http10_close(Config) ->
    {[R], closed} = exchange(port(Config), "GET /read HTTP/1.0\r\n\r\n"),
    ?assertEqual(200, status(R)),
    ?assertEqual(<<"close">>, header(<<"connection">>, R)).

http10_keep_alive(Config) ->
    S = connect(port(Config)),
    ok = send(S, "GET /read?1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
    {ok, R1} = response(S, 5000),
    ?assertEqual(<<"keep-alive">>, header(<<"connection">>, R1)),
    ok = send(S, "GET /read?2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
    {ok, R2} = response(S, 5000),
    ?assertEqual([200, 200], [status(R1), status(R2)]),
    ?assertEqual([#{<<"1">> => <<"HTTP/1.0">>}, #{<<"2">> => <<"HTTP/1.0">>}],
                 [#{Q => P} || #{<<"query">> := Q, <<"protocol">> := P} <- records(2)]),
    gen_tcp:close(S).

connection_close(Config) ->
    {[R], closed} = exchange(port(Config), "GET /read HTTP/1.1\r\nHost: x\r\n"
                             "Connection: close\r\n\r\nGET /read?never HTTP/1.1\r\nHost: x\r\n\r\n"),
    ?assertEqual(<<"close">>, header(<<"connection">>, R)),
    ?assertEqual(1, length(records(1))).

unread_body_closes(Config) ->
    %% The app answers without reading: the response says close, the rest of the body is
    %% drained (the client reads the response, not a reset), the connection ends.
    S = connect(port(Config)),
    ok = send(S, ["POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n",
                  lists:duplicate(1000, $a)]),
    {ok, R} = response(S, 5000),
    ?assertEqual({200, <<"ignored the body\n">>}, sb(R)),
    ?assertEqual(<<"close">>, header(<<"connection">>, R)),
    ?assertEqual(true, closed(S, 5000)).

%% ---------------------------------------------------------------------------
%% Responses.

bad_response_headers(Config) ->
    [begin
         reset(),
         {[R], open} = exchange(port(Config), "GET /bad_header?kind=" ++ K ++
                                " HTTP/1.1\r\nHost: x\r\n\r\n"),
         ?assertEqual(500, status(R)),
         ?assertEqual(undefined, header(<<"set-cookie">>, R)),
         ?assertEqual(undefined, header(<<"x-ok">>, R)),
         [#{<<"error">> := E}] = records(1),
         ?assertMatch(<<"ValueError: ", _/binary>>, E)
     end || K <- ["crlf", "lf", "name", "colon", "nul", "status", "cl"]].

content_length_extra_dropped(Config) ->
    %% Declares 10, yields 20: exactly 10 bytes go out, then the connection closes
    %% (the next request on it is not read).
    S = connect(port(Config)),
    ok = send(S, "GET /length?declared=10&sent=20 HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /read HTTP/1.1\r\nHost: x\r\n\r\n"),
    {ok, R} = response(S, 5000),
    ?assertEqual({200, <<"xxxxxxxxxx">>}, sb(R)),
    ?assertEqual(true, closed(S, 5000)).

content_length_short_closes(Config) ->
    S = connect(port(Config)),
    ok = send(S, "GET /length?declared=20&sent=10 HTTP/1.1\r\nHost: x\r\n\r\n"),
    All = bodypipe_http_test_client:recv_all(S, 5000),   % returns when the server closes
    [_Head, Body] = binary:split(All, <<"\r\n\r\n">>),
    ?assertMatch({_, _}, binary:match(All, <<"Content-Length: 20\r\n">>)),
    ?assertEqual(<<"xxxxxxxxxx">>, Body).

content_length_exact_keeps(Config) ->
    S = connect(port(Config)),
    ok = send(S, "GET /length?declared=10&sent=10 HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /read HTTP/1.1\r\nHost: x\r\n\r\n"),
    [R1, R2] = bodypipe_http_test_client:responses(S, 2, 5000),
    ?assertEqual([{200, <<"xxxxxxxxxx">>}, {200, <<"read 0\n">>}], [sb(R1), sb(R2)]),
    gen_tcp:close(S).

close_raises_after_last_block(Config) ->
    S = connect(port(Config)),
    ok = send(S, "GET /close_raises HTTP/1.1\r\nHost: x\r\n\r\nGET /read HTTP/1.1\r\nHost: x\r\n\r\n"),
    [R1, R2] = bodypipe_http_test_client:responses(S, 2, 5000),
    ?assertEqual([{200, <<"hello">>}, {200, <<"read 0\n">>}], [sb(R1), sb(R2)]),
    gen_tcp:close(S).

server_header(Config) ->
    {[R], open} = exchange(port(Config), "GET /read HTTP/1.1\r\nHost: x\r\n\r\n"),
    ?assertEqual(<<"bodypipe">>, header(<<"server">>, R)),
    ?assertMatch(<<_:3/binary, ", ", _/binary>>, header(<<"date">>, R)).

big_block(Config) ->
    %% One 3 MiB + 7 bytes block (sent in 1 MiB slices by the host), chunked.
    Size = 3 * 1048576 + 7,
    S = connect(port(Config)),
    ok = send(S, "GET /big?size=" ++ integer_to_list(Size) ++ " HTTP/1.1\r\nHost: x\r\n\r\n"),
    {ok, R} = response(S, 10000),
    Expected = iolist_to_binary([binary:copy(list_to_binary(lists:seq(0, 250)), Size div 251),
                                 binary:copy(<<"z">>, Size rem 251)]),
    ?assertEqual(<<"chunked">>, header(<<"transfer-encoding">>, R)),
    ?assertEqual(Expected, maps:get(body, R)),
    gen_tcp:close(S).

head_request(Config) ->
    S = connect(port(Config)),
    ok = send(S, "HEAD /read HTTP/1.1\r\nHost: x\r\n\r\nGET /read HTTP/1.1\r\nHost: x\r\n\r\n"),
    {ok, R1} = response(S, 5000, #{head => true}),
    ?assertEqual(<<"7">>, header(<<"content-length">>, R1)),
    {ok, R2} = response(S, 5000),
    ?assertEqual({200, <<"read 0\n">>}, sb(R2)),
    gen_tcp:close(S).

not_found_keeps_alive(_Config) ->
    {ok, _} = start_server(framing_mounted, #{apps => [{<<"/only">>, <<"bp_framing_apps:application">>}]}),
    try
        Port = bodypipe_http:port(framing_mounted),
        {[R1, R2], open} = exchange(Port, "GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n"
                                          "GET /only/read HTTP/1.1\r\nHost: x\r\n\r\n"),
        ?assertEqual([404, 200], [status(R1), status(R2)]),
        %% With a body it cannot skip, the 404 closes.
        {[R3], closed} = exchange(Port, "POST /elsewhere HTTP/1.1\r\nHost: x\r\n"
                                        "Content-Length: 3\r\n\r\nabc"),
        ?assertEqual(404, status(R3))
    after
        bodypipe_http:stop(framing_mounted)
    end.

%% ---------------------------------------------------------------------------
%% Routing and the environ.

percent_decoded_routing(Config) ->
    [begin
         reset(),
         {[R], open} = exchange(port(Config), "GET " ++ Target ++ " HTTP/1.1\r\nHost: x\r\n\r\n"),
         ?assertEqual(200, status(R)),
         [#{<<"script_name">> := Script, <<"path_info">> := Info, <<"uri">> := Uri}] = records(1),
         ?assertEqual({list_to_binary(ExpScript), <<"/read">>, list_to_binary(Target)},
                      {Script, Info, Uri})
     end || {Target, ExpScript} <- [{"/b%61d/read", "/bad"}, {"/bad%2Fread", "/bad"},
                                    {"/%62%61%64/read", "/bad"}, {"/bad/read", "/bad"}]],
    %% A prefix matches whole segments only, and dot segments are not resolved.
    [begin
         reset(),
         {[_], open} = exchange(port(Config), "GET " ++ Target ++ " HTTP/1.1\r\nHost: x\r\n\r\n"),
         [#{<<"script_name">> := Script, <<"path_info">> := Info}] = records(1),
         ?assertEqual({list_to_binary(ExpScript), list_to_binary(ExpInfo)}, {Script, Info})
     end || {Target, ExpScript, ExpInfo} <- [{"/badx/read", "", "/badx/read"},
                                             {"/bad/../read", "/bad", "/../read"},
                                             {"/x/../bad/read", "", "/x/../bad/read"}]].

environ_full(Config) ->
    {[R], open} = exchange(port(Config),
                           "POST /read/a%20b/%zz?q=%20x&r HTTP/1.1\r\nHost: example.com\r\n"
                           "Content-Type: text/x-test\r\nX-Multi: 1\r\nX-Multi: 2\r\n"
                           "x-multi: 3\r\nX_Under: dropped\r\nCookie: a=1\r\n"
                           "Content-Length: 5\r\n\r\nhello"),
    ?assertEqual(200, status(R)),
    [#{<<"path_info">> := <<"/read/a b/%zz">>, <<"query">> := <<"q=%20x&r">>,
       <<"uri">> := <<"/read/a%20b/%zz?q=%20x&r">>, <<"headers">> := H, <<"body">> := <<"hello">>,
       <<"method">> := <<"POST">>, <<"protocol">> := <<"HTTP/1.1">>}] = records(1),
    ?assertEqual(#{<<"HTTP_HOST">> => <<"example.com">>, <<"CONTENT_TYPE">> => <<"text/x-test">>,
                   <<"HTTP_X_MULTI">> => <<"1, 2, 3">>, <<"HTTP_COOKIE">> => <<"a=1">>,
                   <<"CONTENT_LENGTH">> => <<"5">>}, H).

absolute_form(Config) ->
    {[R], open} = exchange(port(Config), "GET http://example.com:8080/b%61d/read?q=1 HTTP/1.1\r\n"
                           "Host: example.com:8080\r\n\r\n"),
    ?assertEqual(200, status(R)),
    [#{<<"script_name">> := <<"/bad">>, <<"path_info">> := <<"/read">>, <<"query">> := <<"q=1">>,
       <<"uri">> := <<"http://example.com:8080/b%61d/read?q=1">>}] = records(1).

asterisk_and_connect(Config) ->
    {[R1], open} = exchange(port(Config), "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"),
    ?assertEqual(404, status(R1)),   % the test app knows no "*"
    [#{<<"method">> := <<"OPTIONS">>, <<"path_info">> := <<"*">>, <<"script_name">> := <<>>}] =
        records(1),
    reset(),
    {[R2], _} = exchange(port(Config), "CONNECT example.com:443 HTTP/1.1\r\n"
                         "Host: example.com:443\r\n\r\n"),
    ?assertEqual(404, status(R2)),
    [#{<<"method">> := <<"CONNECT">>, <<"uri">> := <<"example.com:443">>}] = records(1).

%% ---------------------------------------------------------------------------
%% Timeouts (this group's server: header 500 ms, body 500 ms, keep-alive 500 ms,
%% app 1500 ms). No timing is asserted, only what happens.

header_timeout_partial(Config) ->
    S = connect(port(Config)),
    ok = send(S, "GET /read HTTP/1.1\r\nHost: x\r\n"),
    {ok, R} = response(S, 10000),
    ?assertEqual(408, status(R)),
    ?assertEqual(true, closed(S, 10000)),
    ?assertEqual([], records(0)).

header_timeout_drip(Config) ->
    %% header_timeout bounds the whole head, however steadily it trickles in.
    S = connect(port(Config)),
    ok = send(S, "GET /read HTTP/1.1\r\n"),
    Drip = fun F(0) -> ok;
               F(N) -> ok = send(S, "X-Drip: 1\r\n"),
                       case bodypipe_http_test_client:wait_data(S, 50) of
                           timeout -> F(N - 1);
                           data -> ok   % the answer: stop dripping
                       end
           end,
    Drip(60),
    {ok, R} = response(S, 10000),
    ?assertEqual(408, status(R)).

silent_connection_closed(Config) ->
    S = connect(port(Config)),
    ?assertEqual(true, closed(S, 10000)).

keepalive_timeout(Config) ->
    S = connect(port(Config)),
    ok = send(S, "GET /read HTTP/1.1\r\nHost: x\r\n\r\n"),
    {ok, R} = response(S, 5000),
    ?assertEqual(200, status(R)),
    ?assertEqual(true, closed(S, 10000)).   % closed without a response

body_timeout(Config) ->
    S = connect(port(Config)),
    ok = send(S, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"),
    {ok, R} = response(S, 10000),
    ?assertEqual(408, status(R)),
    ?assertEqual(true, closed(S, 10000)),
    [#{<<"error">> := E}] = records(1),
    ?assertMatch({_, _}, binary:match(E, <<"body_timeout">>)).

app_timeout_aborts_input(_Config) ->
    %% The app waits for a body that does not come (body_timeout far away): at
    %% app_timeout its read raises BodyAborted(app_timeout) and the client gets 503.
    {ok, _} = start_server(framing_app_timeout, #{app_timeout => 500, body_timeout => 60000}),
    try
        S = connect(bodypipe_http:port(framing_app_timeout)),
        ok = send(S, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"),
        {ok, R} = response(S, 10000),
        ?assertEqual(503, status(R)),
        ?assertEqual(true, closed(S, 10000)),
        [#{<<"error">> := E}] = records(1),
        ?assertMatch({_, _}, binary:match(E, <<"app_timeout">>))
    after
        bodypipe_http:stop(framing_app_timeout)
    end.

app_timeout_slow_app(Config) ->
    S = connect(port(Config)),
    ok = send(S, "GET /sleep?ms=4000 HTTP/1.1\r\nHost: x\r\n\r\n"),
    {ok, R} = response(S, 10000),
    ?assertEqual(503, status(R)),
    ?assertEqual(true, closed(S, 10000)),
    %% The app itself ran to its end (Python threads cannot be interrupted).
    [#{<<"path_info">> := <<"/sleep">>}] = records(1).

%% ---------------------------------------------------------------------------
%% Starvation: body readers are capped below the Python pool, so requests
%% without a body are served while every reader is blocked on a slow client.

body_readers_capped(_Config) ->
    {ok, _} = start_server(framing_readers, #{max_body_readers => 2}),
    try
        Port = bodypipe_http:port(framing_readers),
        Slow = [begin
                    S = connect(Port),
                    ok = send(S, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab"),
                    S
                end || _ <- [1, 2]],
        wait_until(fun() -> maps:get(body_readers, bodypipe_http:info(framing_readers)) =:= 2 end),
        %% A third upload: 503 with Retry-After, before any of its body is read.
        {[R], closed} = exchange(Port, "POST /read HTTP/1.1\r\nHost: x\r\n"
                                       "Content-Length: 3\r\n\r\nabc"),
        ?assertEqual(503, status(R)),
        ?assertEqual(<<"1">>, header(<<"retry-after">>, R)),
        %% Requests without a body are served meanwhile.
        {[G], open} = exchange(Port, "GET /read HTTP/1.1\r\nHost: x\r\n\r\n"),
        ?assertEqual({200, <<"read 0\n">>}, sb(G)),
        %% The slow ones finish; their slots are free again.
        [begin ok = send(S, "cdefghij"), {ok, D} = response(S, 5000),
               ?assertEqual({200, <<"read 10\n">>}, sb(D)), gen_tcp:close(S) end || S <- Slow],
        wait_until(fun() -> maps:get(body_readers, bodypipe_http:info(framing_readers)) =:= 0 end),
        {[R2], open} = exchange(Port, "POST /read HTTP/1.1\r\nHost: x\r\n"
                                      "Content-Length: 3\r\n\r\nabc"),
        ?assertEqual({200, <<"read 3\n">>}, sb(R2))
    after
        bodypipe_http:stop(framing_readers)
    end.

%% ---------------------------------------------------------------------------
%% Sockets.

reuseport(_Config) ->
    {ok, _} = start_server(framing_rp1, #{reuseport => true}),
    try
        Port = bodypipe_http:port(framing_rp1),
        %% Without SO_REUSEPORT the port is taken; with it, a second server shares it.
        ?assertMatch({error, {listen, eaddrinuse}},
                     start_server(framing_rp2, #{port => Port, reuseport => false})),
        {ok, _} = start_server(framing_rp2, #{port => Port, reuseport => true}),
        try
            Rs = [exchange(Port, "GET /read HTTP/1.1\r\nHost: x\r\n\r\n") || _ <- lists:seq(1, 20)],
            ?assertEqual(lists:duplicate(20, 200), [status(R) || {[R], open} <- Rs])
        after
            bodypipe_http:stop(framing_rp2)
        end
    after
        bodypipe_http:stop(framing_rp1)
    end.

max_connections(_Config) ->
    {ok, _} = start_server(framing_maxconn, #{max_connections => 2, acceptors => 1}),
    try
        Port = bodypipe_http:port(framing_maxconn),
        Held = [connect(Port) || _ <- [1, 2]],
        wait_until(fun() -> maps:get(connections, bodypipe_http:info(framing_maxconn)) =:= 2 end),
        S = connect(Port),   % in the kernel's backlog, not served
        ok = send(S, "GET /read HTTP/1.1\r\nHost: x\r\n\r\n"),
        ?assertEqual({error, timeout}, response(S, 500)),
        gen_tcp:close(hd(Held)),
        {ok, R} = response(S, 5000),
        ?assertEqual(200, status(R)),
        [gen_tcp:close(H) || H <- [S | tl(Held)]]
    after
        bodypipe_http:stop(framing_maxconn)
    end.

%% ---------------------------------------------------------------------------
%% Helpers.

port(Config) -> ?config(port, Config).

%% The request is refused with Status, the connection closes, the app never runs.
refused(Config, Status, Bytes) ->
    {Rs, End} = exchange(port(Config), Bytes),
    ?assertEqual({[Status], closed}, {[status(R) || R <- Rs], End}),
    ?assertEqual(<<"close">>, header(<<"connection">>, hd(Rs))),
    ?assertEqual([], records(0)).

%% The body is refused with Status after the app started: the app's read raised
%% BodyAborted mentioning Why; nothing after the body was served.
refused_body(Config, Status, Bytes, Why) ->
    {Rs, End} = exchange(port(Config), Bytes),
    ?assertEqual({[Status], closed}, {[status(R) || R <- Rs], End}),
    [#{<<"error">> := E, <<"body">> := <<>>}] = records(1),
    ?assertMatch({_, _}, binary:match(E, Why)).

status(#{status := S}) -> S.

sb(#{status := S, body := B}) -> {S, B}.

reset() ->
    {ok, _} = py:call(bp_framing_apps, reset, []),
    ok.

%% What the app recorded, once it has recorded N requests (or at once for 0: then
%% after a short grace period, so a late record would be seen).
records(0) ->
    timer:sleep(100),
    fetch_records();
records(N) ->
    wait_until(fun() -> length(fetch_records()) >= N end),
    fetch_records().

fetch_records() ->
    {ok, Rs} = py:call(bp_framing_apps, records, []),
    Rs.

wait_until(Fun) ->
    bodypipe_http_test_client:wait_until(Fun, 200).

recv_until(S, Acc, Pattern) ->
    case binary:match(Acc, Pattern) of
        nomatch ->
            {ok, More} = gen_tcp:recv(S, 0, 5000),
            recv_until(S, <<Acc/binary, More/binary>>, Pattern);
        _ ->
            Acc
    end.
